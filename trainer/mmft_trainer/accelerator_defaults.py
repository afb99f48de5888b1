"""Per-accelerator training defaults for Gemma-3-4B-class multimodal LoRA (the operator renders these).

Sized from memory measured on an H200 (docs/bench-trainer.md): peak memory grows linearly with the micro batch,
``fixed + per_sample * micro_batch``, and each card gets the largest power-of-two micro batch whose peak stays under
85% of its memory. Gradient checkpointing and 4-bit QLoRA are used only where bf16 LoRA without checkpointing
does not fit even a micro batch of 4 (the seed's effective batch). Attention is PyTorch SDPA everywhere: it runs
offline (flash-attention for Axolotl comes from a model hub) and uses flash kernels on Ampere, Ada and Hopper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AcceleratorDefaults:
    memory_gib: float
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    adapter: str
    dataloader_num_workers: int

    def axolotl_options(self) -> dict:
        options = {
            "adapter": self.adapter,
            "load_in_4bit": self.adapter == "qlora",
            "micro_batch_size": self.micro_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "gradient_checkpointing": self.gradient_checkpointing,
            "dataloader_num_workers": self.dataloader_num_workers,
            "dataloader_pin_memory": True,
            "dataloader_prefetch_factor": 4,
            "attn_implementation": "sdpa",
            "bf16": True,
            "fp16": False,
            "lora_mlp_kernel": True,
            "lora_qkv_kernel": True,
            "lora_o_kernel": True,
        }
        return options

    def as_dict(self) -> dict:
        return asdict(self)


# Keys are the GKE node label cloud.google.com/gke-accelerator (nvidia-h200-141gb for the benchmark machine).
DEFAULTS: dict[str, AcceleratorDefaults] = {
    "nvidia-h200-141gb": AcceleratorDefaults(141, 32, 1, False, "lora", 8),
    "nvidia-h100-mega-80gb": AcceleratorDefaults(80, 16, 1, False, "lora", 8),
    "nvidia-h100-80gb": AcceleratorDefaults(80, 16, 1, False, "lora", 8),
    "nvidia-a100-80gb": AcceleratorDefaults(80, 16, 1, False, "lora", 6),
    "nvidia-tesla-a100": AcceleratorDefaults(40, 4, 1, False, "lora", 6),
    "nvidia-l4": AcceleratorDefaults(24, 4, 1, True, "lora", 6),
}


def defaults_for(accelerator: str) -> AcceleratorDefaults:
    try:
        return DEFAULTS[accelerator]
    except KeyError:
        raise KeyError(f"no training defaults for accelerator {accelerator!r}; known: {', '.join(DEFAULTS)}") from None
