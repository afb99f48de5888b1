"""Axolotl configs for the trainer tests: the seed's settings, with the overrides a CPU needs."""

from __future__ import annotations

from pathlib import Path

import yaml

# The seed's target-module regex: in current transformers Gemma 3's modules are model.language_model.layers.N...,
# so it matches nothing. This is the same intent, spelled for the current names.
FIXED_TARGET_MODULES = r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"
SEED_TARGET_MODULES = r"language_model.model.layers.[\d]+.(mlp|cross_attn|self_attn).(up|down|gate|q|k|v|o)_proj"


def cpu_config(model_dir: Path, dataset: Path, output_dir: Path, **overrides) -> dict:
    config = {
        "base_model": str(model_dir),
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "GemmaTokenizer",
        "processor_type": "AutoProcessor",
        "chat_template": "gemma3",
        "datasets": [{"path": str(dataset), "type": "chat_template", "ds_type": "json",
                      "field_messages": "messages", "chat_template": "gemma3"}],
        "adapter": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": FIXED_TARGET_MODULES,
        "sequence_len": 256,
        "optimizer": "adamw_torch_fused",
        "lr_scheduler": "cosine",
        "learning_rate": 2e-4,
        "weight_decay": 0.01,
        "max_steps": 4,
        "warmup_steps": 1,
        "gradient_checkpointing": True,
        "gradient_accumulation_steps": 2,
        "micro_batch_size": 1,
        "save_strategy": "steps",
        "save_steps": 2,
        "save_total_limit": 2,
        "skip_prepare_dataset": True,
        "remove_unused_columns": False,
        "sample_packing": False,
        "image_size": 32,
        "image_resize_algorithm": "bilinear",
        "use_tensorboard": True,
        "output_dir": str(output_dir),
        "logging_steps": 1,
        "seed": 7,
        # CPU overrides: no bf16/fp16, no Triton LoRA kernels, no flash attention (its kernel comes from a hub).
        "bf16": False,
        "fp16": False,
        "flash_attention": False,
        "lora_mlp_kernel": False,
        "lora_qkv_kernel": False,
        "lora_o_kernel": False,
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
