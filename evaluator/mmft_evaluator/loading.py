"""Loading one model of the spec for inference: a full model, a base plus LoRA adapter (merged into the weights
once, so inference pays no adapter overhead), or an adapter directory that names its base; and the key that says
which loaded models turn an image into the same features (mmft_evaluator.image_features)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mmft_storage.gcs import fetch_tree, is_gcs_uri

from .model_spec import ModelSpec

_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


@dataclass
class LoadedModel:
    model: object
    processor: object
    device: object
    # Models with the same key compute the same image features (None: share with no other model).
    sharing_key: str | None = None


def _local(reference: str, cache_dir: Path) -> str:
    return str(fetch_tree(reference, cache_dir)) if is_gcs_uri(reference) else reference


def _resolve(spec: ModelSpec, cache_dir: Path) -> tuple[str, str | None]:
    model = _local(spec.model, cache_dir)
    adapter = _local(spec.adapter, cache_dir) if spec.adapter else None
    if adapter is None and (Path(model) / "adapter_config.json").is_file():
        adapter = model
        base = json.loads((Path(model) / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{spec.model}: adapter_config.json names no base_model_name_or_path; use BASE+ADAPTER")
        model = _local(base, cache_dir)
    return model, adapter


def pick_device(requested: str):
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no GPU")
    return torch.device(requested)


def load_model(spec: ModelSpec, device, cache_dir: Path) -> LoadedModel:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_path, adapter_path = _resolve(spec, cache_dir)
    # bf16 on the GPU as in training; float32 on CPU, where bf16 matmuls are slow or unsupported.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype)
    vision_changed: list[str] = []
    if adapter_path:
        from peft import PeftModel

        adapted = PeftModel.from_pretrained(model, adapter_path)
        vision_changed = adapted_vision_modules(adapted)
        model = adapted.merge_and_unload()
    model.to(device).eval()
    has_own_processor = adapter_path and any((Path(adapter_path) / name).is_file() for name in _PROCESSOR_FILES)
    processor = AutoProcessor.from_pretrained(adapter_path if has_own_processor else model_path)
    # Left padding puts every prompt's last token in the last column, where the answer's first token is scored.
    processor.tokenizer.padding_side = "left"
    return LoadedModel(model=model, processor=processor, device=device,
                       sharing_key=sharing_key(model_path, processor, vision_changed))


def adapted_vision_modules(adapted) -> list[str]:
    """Names of the modules of a PEFT model inside its vision tower or projector that the adapter changes: the
    modules its config's target modules matched (PEFT's own matching) and those it saves whole."""
    from .image_features import VISION_MODULE_NAMES

    changed = list(getattr(adapted, "targeted_module_names", None) or [])
    changed += [name for name, module in adapted.named_modules()
                if type(module).__name__ in ("ModulesToSaveWrapper", "TrainableTokensWrapper")]
    return sorted({name for name in changed if VISION_MODULE_NAMES & set(name.split("."))})


def sharing_key(model_path: str, processor, vision_changed: list[str]) -> str | None:
    """Models with the same base weights and image preprocessing compute the same image features, unless an
    adapter changed the vision tower or projector (then this model shares with none)."""
    if vision_changed:
        return None
    image_processor = getattr(processor, "image_processor", None)
    preprocessing = image_processor.to_json_string() if hasattr(image_processor, "to_json_string") else ""
    return json.dumps([str(Path(model_path).resolve()) if Path(model_path).exists() else model_path, preprocessing])
