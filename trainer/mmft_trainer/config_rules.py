"""Checks on the raw Axolotl YAML that Axolotl's own validator lets through.

Axolotl 0.19.0 accepts ``lora_r: -1``, ``lora_dropout: 2`` and ``optimizer: foo``, and silently drops unknown keys
such as a typo'd ``lora_rr``. These rules are pure Python: the caller passes the schema's key and enum sets, so the
rules are testable without torch or Axolotl installed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Bound:
    minimum: float | None = None
    maximum: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    integer: bool = False

    def violation(self, value: Any) -> str | None:
        value = _as_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return f"must be a number, got {value!r}"
        if self.integer and not float(value).is_integer():
            return f"must be a whole number, got {value!r}"
        if self.minimum is not None:
            below = value < self.minimum if self.min_inclusive else value <= self.minimum
            if below:
                return f"must be {'>=' if self.min_inclusive else '>'} {self.minimum}, got {value!r}"
        if self.maximum is not None:
            above = value > self.maximum if self.max_inclusive else value >= self.maximum
            if above:
                return f"must be {'<=' if self.max_inclusive else '<'} {self.maximum}, got {value!r}"
        return None


def _as_number(value: Any) -> Any:
    """A number spelled as a string (PyYAML reads ``2e-5`` as one) is that number, as Axolotl's schema coerces it."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


POSITIVE_INT = Bound(minimum=1, integer=True)
NON_NEGATIVE_INT = Bound(minimum=0, integer=True)
POSITIVE = Bound(minimum=0, min_inclusive=False)
NON_NEGATIVE = Bound(minimum=0)

BOUNDS: dict[str, Bound] = {
    "lora_r": POSITIVE_INT,
    "lora_alpha": POSITIVE,
    "lora_dropout": Bound(minimum=0, maximum=1, max_inclusive=False),
    "learning_rate": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "max_grad_norm": NON_NEGATIVE,
    "micro_batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "max_steps": POSITIVE_INT,
    "num_epochs": POSITIVE,
    "warmup_steps": NON_NEGATIVE_INT,
    "warmup_ratio": Bound(minimum=0, maximum=1),
    "sequence_len": POSITIVE_INT,
    "save_steps": POSITIVE,
    "save_total_limit": POSITIVE_INT,
    "logging_steps": POSITIVE,
    "image_size": POSITIVE_INT,
    "dataloader_num_workers": NON_NEGATIVE_INT,
    "seed": NON_NEGATIVE_INT,
}

ADAPTERS = ("lora", "qlora")
LOCAL_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow")
LOCAL_DS_TYPES = ("json", "csv", "parquet", "arrow", "text")


# Axolotl's switches for experiment trackers and the package each one imports when training starts.
TRACKER_PACKAGES = {"use_wandb": "wandb", "use_mlflow": "mlflow"}


def missing_tracker_packages(config: dict, installed: Callable[[str], bool]) -> list[Finding]:
    """Trackers the config turns on whose package this image lacks: found before the model loads, not at step 0."""
    return [
        Finding(option, f"needs the {package} Python package, which this trainer image does not have; install it in "
                        "the image or remove the tracker from spec.tracking")
        for option, package in TRACKER_PACKAGES.items()
        if config.get(option) and not installed(package)
    ]


def suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_keys(config: dict, known: set[str], prefix: str = "") -> list[Finding]:
    return [
        Finding(f"{prefix}{key}", f"unknown key (Axolotl would silently ignore it){suggest(key, known)}")
        for key in config
        if key not in known
    ]


def bound_violations(config: dict) -> list[Finding]:
    findings = []
    for key, bound in BOUNDS.items():
        if config.get(key) is None:
            continue
        problem = bound.violation(config[key])
        if problem:
            findings.append(Finding(key, problem))
    return findings


def enum_violations(config: dict, optimizers: set[str]) -> list[Finding]:
    findings = []
    adapter = config.get("adapter")
    if adapter is not None and adapter not in ADAPTERS:
        findings.append(Finding("adapter", f"unknown adapter {adapter!r}; expected one of {', '.join(ADAPTERS)}"
                                           f"{suggest(str(adapter), ADAPTERS)}"))
    if adapter == "qlora" and not (config.get("load_in_4bit") or config.get("load_in_8bit")):
        findings.append(Finding("load_in_4bit", "adapter 'qlora' needs load_in_4bit: true"))
    optimizer = config.get("optimizer")
    if optimizer is not None and optimizer not in optimizers:
        findings.append(Finding("optimizer", f"unknown optimizer {optimizer!r}{suggest(str(optimizer), optimizers)}"))
    if not config.get("max_steps") and not config.get("num_epochs"):
        findings.append(Finding("max_steps", "set max_steps or num_epochs so the run has a length"))
    return findings


def dataset_file_problems(config: dict, base_dir: Path) -> list[Finding]:
    findings = []
    datasets = config.get("datasets")
    if not datasets:
        return [Finding("datasets", "no dataset configured")]
    if not isinstance(datasets, list):
        return [Finding("datasets", f"must be a list of datasets, got {type(datasets).__name__}")]
    for index, dataset in enumerate(datasets):
        field = f"datasets[{index}].path"
        path = dataset.get("path") if isinstance(dataset, dict) else None
        if not path:
            findings.append(Finding(field, "missing"))
            continue
        local = Path(path) if Path(path).is_absolute() else base_dir / path
        looks_local = (
            Path(path).is_absolute()
            or str(path).startswith(".")
            or str(path).endswith(LOCAL_DATA_SUFFIXES)
            or dataset.get("ds_type") in LOCAL_DS_TYPES
        )
        if looks_local and not local.exists():
            findings.append(Finding(field, f"file not found: {local}"))
    return findings


def target_module_problems(target_modules: Any, module_names: list[str]) -> list[Finding]:
    """Apply PEFT's own matching rule (regex fullmatch for a string, suffix match for a list) to real names."""
    if target_modules is None:
        return []
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as error:
            return [Finding("lora_target_modules", f"invalid regular expression: {error}")]
        if any(pattern.fullmatch(name) for name in module_names):
            return []
    else:
        wanted = [str(target) for target in target_modules]
        if any(name == target or name.endswith("." + target) for name in module_names for target in wanted):
            return []
    examples = ", ".join(_example_projections(module_names)) or "(the model has no named modules)"
    return [Finding("lora_target_modules",
                    f"matches no module of the model (PEFT fullmatches a string as a regex against names such as "
                    f"{examples}); fix the pattern or use lora_target_linear: true")]


def _example_projections(module_names: list[str], limit: int = 3) -> list[str]:
    """One projection of layer 0 from each stack (language model, vision tower...), so the user sees each prefix."""
    by_stack: dict[str, str] = {}
    for name in module_names:
        match = re.match(r"(.*)\.layers\.0\..*_proj$", name)
        if match:
            by_stack.setdefault(match.group(1), name)
    examples = sorted(by_stack.values(), key=lambda name: "language_model" not in name)
    return examples[:limit] or module_names[:limit]
