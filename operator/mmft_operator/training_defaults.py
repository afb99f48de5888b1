"""Training defaults per GKE accelerator for Gemma-3-4B-class multimodal LoRA, sized from memory measured on an H200.

Measured with bench/train_gemma3_h200.py (docs/bench-trainer.md), bf16 LoRA r=32 on all language-model projections,
no gradient checkpointing, SDPA attention, torch.compile and Liger (RMSNorm, RoPE, fused linear cross-entropy), the
frozen vision tower run without autograd (mmft_trainer.frozen_towers), one 896 px image and ~280 text tokens per
sample: peak memory = 9.4 GiB + 1.02 GiB x micro batch (32 -> 41.9 GiB, 64 -> 74.4 GiB). The seed's QLoRA with
gradient checkpointing at micro batch 1 peaked at 5.45 GiB.

Rule: the largest micro batch on :data:`MICRO_BATCH_LADDER` whose predicted peak stays under :data:`MEMORY_HEADROOM`
of the card, with bf16 LoRA and no checkpointing; gradient accumulation keeps the effective batch at least the seed's
4. Only when not even micro batch 1 fits does it fall back to the seed's QLoRA + checkpointing (measured 5.45 GiB).
The ladder stops at 32 although 64 fits an H200: 64 was only 5.5% faster (38.1 vs 36.1 samples/s) and doubles the
effective batch again, which with the seed's learning rate means half as many optimizer updates per epoch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

LORA_FIXED_GIB = 9.4
LORA_PER_SAMPLE_GIB = 1.02
QLORA_CHECKPOINTED_MICRO_BATCH_1_GIB = 5.45
MEMORY_HEADROOM = 0.85
MICRO_BATCH_LADDER = (1, 2, 4, 6, 8, 12, 16, 24, 32)
SEED_EFFECTIVE_BATCH = 4
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"


@dataclass(frozen=True)
class Accelerator:
    memory_gib: float  # what torch reports as the device's total memory
    dataloader_workers: int  # CPUs Autopilot gives one such GPU, less two for the trainer and the GCS Fuse sidecar


# Keys: the GKE node label cloud.google.com/gke-accelerator (the benchmark's H200 under its GKE name).
ACCELERATORS: dict[str, Accelerator] = {
    "nvidia-tesla-a100": Accelerator(39.4, 6),
    "nvidia-a100-80gb": Accelerator(79.1, 6),
    "nvidia-h100-80gb": Accelerator(79.1, 8),
    "nvidia-h100-mega-80gb": Accelerator(79.1, 8),
    "nvidia-l4": Accelerator(22.0, 4),
    "nvidia-h200-141gb": Accelerator(139.8, 8),
}


@dataclass(frozen=True)
class TrainingDefaults:
    adapter: str
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    dataloader_num_workers: int
    predicted_peak_gib: float

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
            "lora_mlp_kernel": True,
            "lora_qkv_kernel": True,
            "lora_o_kernel": True,
        }
        if self.adapter == "lora":
            options.update(
                torch_compile=True,
                plugins=[LIGER_PLUGIN],
                liger_rms_norm=True,
                liger_rope=True,
                liger_fused_linear_cross_entropy=True,
            )
        return options

    def as_dict(self) -> dict:
        return asdict(self)


def plan(memory_gib: float, dataloader_workers: int) -> TrainingDefaults:
    budget = memory_gib * MEMORY_HEADROOM
    fitting = [size for size in MICRO_BATCH_LADDER if LORA_FIXED_GIB + LORA_PER_SAMPLE_GIB * size <= budget]
    if fitting:
        micro_batch = fitting[-1]
        return TrainingDefaults(
            "lora",
            micro_batch,
            math.ceil(SEED_EFFECTIVE_BATCH / micro_batch),
            False,
            dataloader_workers,
            round(LORA_FIXED_GIB + LORA_PER_SAMPLE_GIB * micro_batch, 1),
        )
    if QLORA_CHECKPOINTED_MICRO_BATCH_1_GIB <= budget:
        return TrainingDefaults(
            "qlora", 1, SEED_EFFECTIVE_BATCH, True, dataloader_workers, QLORA_CHECKPOINTED_MICRO_BATCH_1_GIB
        )
    raise ValueError(
        f"{memory_gib} GiB is too little for Gemma-3-4B multimodal fine-tuning "
        f"(QLoRA with checkpointing needs {QLORA_CHECKPOINTED_MICRO_BATCH_1_GIB} GiB)"
    )


def defaults_for(accelerator: str) -> TrainingDefaults:
    try:
        card = ACCELERATORS[accelerator]
    except KeyError:
        raise KeyError(
            f"no training defaults for accelerator {accelerator!r}; known: {', '.join(ACCELERATORS)}"
        ) from None
    return plan(card.memory_gib, card.dataloader_workers)
