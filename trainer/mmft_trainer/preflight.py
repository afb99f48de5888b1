"""Preflight: everything that can be checked before a GPU is spent, each problem named by its config field.

Order matters: unknown keys in the YAML as written first (Axolotl's validator drops them silently), then Axolotl's
own validator, then mmft's rules (what that validator lets through) on the config as Axolotl normalised it, then
the model's config and processor, then ``lora_target_modules`` against the real module names of the model,
instantiated on the meta device (no weights are read).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config_rules import (
    Finding,
    bound_violations,
    dataset_file_problems,
    enum_violations,
    missing_tracker_packages,
    target_module_problems,
    unknown_keys,
)

log = logging.getLogger(__name__)

CUDA_ONLY_OPTIONS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "flash_attention", "bf16", "fp16")


@dataclass
class PreflightResult:
    raw: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    # The config as Axolotl's validator normalised it (set once the validator accepted it).
    normalized: dict | None = None

    @property
    def ok(self) -> bool:
        return not self.findings


def read_config(path: Path) -> tuple[dict, list[Finding]]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        return {}, [Finding("config", f"file not found: {path}")]
    except yaml.YAMLError as error:
        return {}, [Finding("config", f"not valid YAML: {error}")]
    if not isinstance(raw, dict):
        return {}, [Finding("config", "must be a YAML mapping of Axolotl options")]
    return raw, []


def run_preflight(config_path: Path) -> PreflightResult:
    raw, findings = read_config(config_path)
    result = PreflightResult(raw=raw, findings=findings)
    if findings:
        return result
    # Unknown keys are read from the file itself: Axolotl's validator drops them without a word.
    result.findings = _unknown_key_findings(raw)
    if result.findings:
        return result
    validated = validated_config(raw)
    if isinstance(validated, list):
        # Axolotl refused it: mmft's rules on the file as written usually name the problem more plainly.
        result.findings = _rule_findings(raw, Path(config_path)) or validated
        return result
    # Every later check reads the config as Axolotl will train with it (PyYAML reads `2e-5` as a string, and
    # Axolotl's schema makes it a number): a config Axolotl trains with is never refused for its spelling.
    normalized = dict(validated)
    result.normalized = normalized
    result.findings = _rule_findings(normalized, Path(config_path))
    if result.findings:
        return result
    # Independent of each other, so both report at once.
    result.findings = _runtime_findings(normalized) + _tracker_findings(normalized) + _model_findings(normalized)
    return result


def _tracker_findings(config: dict) -> list[Finding]:
    return missing_tracker_packages(config, lambda package: importlib.util.find_spec(package) is not None)


def _unknown_key_findings(raw: dict) -> list[Finding]:
    from axolotl.utils.schemas import datasets as dataset_schemas

    dataset_keys = set()
    for schema in (dataset_schemas.SFTDataset, dataset_schemas.DPODataset, dataset_schemas.KTODataset):
        dataset_keys |= _field_names(schema)
    findings = unknown_keys(raw, _config_keys(raw))
    for index, dataset in enumerate(raw.get("datasets") or []):
        if isinstance(dataset, dict):
            findings += unknown_keys(dataset, dataset_keys, prefix=f"datasets[{index}].")
    return findings


def _rule_findings(config: dict, config_path: Path) -> list[Finding]:
    from axolotl.utils.schemas.enums import CustomSupportedOptimizers
    from transformers.training_args import OptimizerNames

    optimizers = {name.value for name in OptimizerNames} | {name.value for name in CustomSupportedOptimizers}
    return (bound_violations(config) + enum_violations(config, optimizers)
            + dataset_file_problems(config, config_path.parent))


def _field_names(schema) -> set[str]:
    names = set(schema.model_fields)
    names |= {info.alias for info in schema.model_fields.values() if info.alias}
    return names


def _config_keys(raw: dict) -> set[str]:
    from axolotl.utils.schemas.config import AxolotlInputConfig

    keys = _field_names(AxolotlInputConfig)
    if raw.get("plugins"):
        import importlib

        from axolotl.integrations.base import PluginManager

        manager = PluginManager.get_instance()
        for name in raw["plugins"]:
            manager.register(name)
        for dotted in manager.get_input_args():
            module_name, class_name = dotted.rsplit(".", 1)
            keys |= _field_names(getattr(importlib.import_module(module_name), class_name))
    return keys


def validated_config(raw: dict):
    """Axolotl's validator on a copy of ``raw``: the validated config, or the findings it raised."""
    from axolotl.cli.config import gpu_capabilities, prepare_plugins
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from pydantic import ValidationError

    cfg = DictDefault(copy.deepcopy(raw))
    try:
        prepare_plugins(cfg)
        capabilities, env_capabilities = gpu_capabilities()
        return validate_config(cfg, capabilities=capabilities, env_capabilities=env_capabilities)
    except ValidationError as error:
        return [Finding(".".join(str(part) for part in item["loc"]) or "config", item["msg"])
                for item in error.errors()]
    except (ValueError, TypeError, AttributeError) as error:
        return [Finding("config", f"rejected by Axolotl's validator: {error}")]


def _runtime_findings(validated: dict) -> list[Finding]:
    """Options that crash without CUDA, read from the validated config (Axolotl turns LoRA kernels on itself)."""
    import torch

    if torch.cuda.is_available():
        return []
    return [Finding(option, "needs a CUDA GPU, and this machine has none; set it to false")
            for option in CUDA_ONLY_OPTIONS if validated.get(option)]


def _model_findings(raw: dict) -> list[Finding]:
    from transformers import AutoConfig, AutoProcessor

    source = raw.get("base_model_config") or raw.get("base_model")
    if not source:
        return [Finding("base_model", "missing")]
    try:
        model_config = AutoConfig.from_pretrained(source, trust_remote_code=bool(raw.get("trust_remote_code")))
    except (OSError, ValueError) as error:
        return [Finding("base_model", f"cannot load the model's config from {source!r}: {_first_line(error)}")]
    if raw.get("processor_type"):
        try:
            AutoProcessor.from_pretrained(raw.get("processor_config") or source)
        except (OSError, ValueError, TypeError) as error:
            return [Finding("processor_type", f"cannot load the processor from {source!r}: {_first_line(error)}")]
    if raw.get("lora_target_linear") or not raw.get("adapter"):
        return []
    return target_module_problems(raw.get("lora_target_modules"), module_names(model_config, raw))


def module_names(model_config, raw: dict) -> list[str]:
    """Names of the model's modules as PEFT sees them, from an instance on the meta device (no memory used)."""
    import torch
    from axolotl.loaders.constants import MULTIMODAL_AUTO_MODEL_MAPPING
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    if raw.get("processor_type"):
        auto_class = MULTIMODAL_AUTO_MODEL_MAPPING.get(model_config.model_type, AutoModelForImageTextToText)
        if isinstance(auto_class, str):  # as Axolotl's loader does: the mapping holds some classes by name
            auto_class = AutoModelForImageTextToText
    else:
        auto_class = AutoModelForCausalLM
    with torch.device("meta"):
        model = auto_class.from_config(model_config)
    return [name for name, _ in model.named_modules() if name]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
