"""The Axolotl YAML of a FineTuneJob: the seed's gemma3-melanoma.yaml, typed, with GPU defaults per accelerator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmft_operator.api.axolotl_keys import TRACKING_KEYS, TYPED_KEYS
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.training_defaults import LIGER_PLUGIN, model_shape, plan

OUTPUT_MOUNT = "/outputs"
RUN_DIR = f"{OUTPUT_MOUNT}/run"
# A typed key the rendered config leaves out (num_epochs of a run measured in steps).
OMITTED = object()


@dataclass(frozen=True)
class DatasetPaths:
    """Where the JSONL splits are, as seen inside the training pod."""

    train: str
    validation: str | None = None


def effective_warmup_steps(spec: FineTuneJobSpec) -> int:
    training = spec.training
    if training.warmup_steps is not None:
        return training.warmup_steps
    if training.max_steps is None:
        return 0
    return min(100, training.max_steps // 10)


def build_axolotl_config(
    spec: FineTuneJobSpec, dataset: DatasetPaths, output_dir: str = RUN_DIR, run_name: str | None = None
) -> dict[str, Any]:
    """The config; `run_name` (the FineTuneJob's name) names the tracking run when spec.tracking leaves it empty."""
    training = spec.training
    # Overriding `plugins` replaces the Liger set wholesale (its keys need the plugin), and the plan must know.
    liger = "plugins" not in training.overrides
    # Sized by the memory model measured on an H200 (training_defaults, docs/bench-trainer.md) for this card and
    # model size; what the spec sets is kept, and the rest is planned around it.
    card = plan(
        spec.compute.accelerator,
        model_shape(spec.base_model, spec.base_model_size),
        adapter=training.adapter,
        micro_batch=training.micro_batch_size,
        checkpointing=training.gradient_checkpointing,
        liger=liger,
        lora_rank=training.lora.r,
    )
    adapter = card.adapter
    load_in_4bit = training.load_in_4bit if training.load_in_4bit is not None else adapter == "qlora"

    def dataset_entry(path: str) -> dict[str, Any]:
        return {
            "path": path,
            "type": "chat_template",
            "ds_type": "json",
            "field_messages": "messages",
            "chat_template": training.chat_template,
        }

    config: dict[str, Any] = {
        "base_model": spec.base_model,
        "processor_type": "AutoProcessor",
        "datasets": [dataset_entry(dataset.train)],
    }
    if dataset.validation:
        config["test_datasets"] = [{**dataset_entry(dataset.validation), "split": "train"}]
    if spec.hugging_face_token_secret_ref is not None:
        config["hf_use_auth_token"] = True

    # The typed fields, each under its Axolotl key (api/axolotl_keys.py, the one declaration of the mapping): the
    # field's value, or what the operator plans for it when the field is empty or shapes the run.
    planned: dict[str, Any] = {
        "adapter": adapter,
        "load_in_4bit": load_in_4bit,
        "warmup_steps": effective_warmup_steps(spec),
        "gradient_checkpointing": card.gradient_checkpointing,
        "gradient_accumulation_steps": _first(training.gradient_accumulation_steps, card.gradient_accumulation_steps),
        "micro_batch_size": card.micro_batch_size,
        # One run length: max_steps when set, else num_epochs; save_steps only when saving by steps.
        "max_steps": training.max_steps if training.max_steps is not None else OMITTED,
        "num_epochs": training.num_epochs if training.max_steps is None else OMITTED,
        "save_steps": training.save_steps if training.save_strategy == "steps" else OMITTED,
    }
    for typed in TYPED_KEYS:
        value = planned[typed.key] if typed.key in planned else typed.read(training)
        if value is not OMITTED:
            config[typed.key] = value

    config.update(
        {
            "bf16": True,
            "tf32": True,
            # Triton LoRA kernels: every supported accelerator runs them.
            "lora_mlp_kernel": True,
            "lora_qkv_kernel": True,
            "lora_o_kernel": True,
            # Multimodal samples are tokenised on the fly by the processor; packing would split images.
            "skip_prepare_dataset": True,
            "remove_unused_columns": False,
            "sample_packing": False,
            "dataloader_num_workers": card.dataloader_num_workers,
            "dataloader_pin_memory": True,
            "use_tensorboard": True,
            "output_dir": output_dir,
        }
    )
    if card.torch_compile:
        # Measured +23% samples/s with LoRA on the H200; QLoRA's 4-bit layers gain nothing from it.
        config["torch_compile"] = True
    if card.liger:
        # Liger's fused linear cross-entropy never materialises the 262k-vocabulary logits (about 1 GiB per sample):
        # the memory model and so the micro batch assume it, for either adapter.
        config.update(
            plugins=[LIGER_PLUGIN], liger_rms_norm=True, liger_rope=True, liger_fused_linear_cross_entropy=True
        )
    config.update(tracking_config(spec, run_name))
    config.update(training.overrides)
    return config


def tracking_config(spec: FineTuneJobSpec, run_name: str | None) -> dict[str, Any]:
    """The non-secret settings of spec.tracking under their Axolotl keys (api/axolotl_keys.TRACKING_KEYS)."""
    tracking = spec.tracking
    if tracking is None:
        return {}
    config: dict[str, Any] = {}
    if tracking.wandb is not None:
        config["use_wandb"] = True
    if tracking.mlflow is not None:
        config["use_mlflow"] = True
    defaults = {"wandb_name": run_name, "mlflow_run_name": run_name}
    for typed in TRACKING_KEYS:
        block = getattr(tracking, typed.field.split(".", 1)[0])
        if block is None:
            continue
        value = typed.read(tracking)
        if value is None:
            value = defaults.get(typed.key)
        if value is not None:
            config[typed.key] = value
    return config


def _first(explicit, default):  # noqa: ANN001, ANN202 - any field type
    return default if explicit is None else explicit
