"""What the operator knows about each GKE accelerator: pod sizing within Autopilot's limits, training defaults.

Training defaults come from the H200 benchmark (docs/benchmarks.md), scaled by each card's memory. A user's explicit
spec value always wins over these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AcceleratorProfile:
    label: str
    gpu_memory_gib: int
    machine_family: str
    # Autopilot sizes the node from the pod's requests; these stay inside its per-GPU maximum.
    cpu_per_gpu: int
    memory_gib_per_gpu: int
    ephemeral_storage_gib: int
    micro_batch_size: int
    gradient_checkpointing: bool


PROFILES: dict[str, AcceleratorProfile] = {
    profile.label: profile
    for profile in (
        AcceleratorProfile("nvidia-tesla-a100", 40, "a2", 8, 32, 10, micro_batch_size=8, gradient_checkpointing=False),
        AcceleratorProfile("nvidia-a100-80gb", 80, "a2", 10, 64, 10, micro_batch_size=16, gradient_checkpointing=False),
        AcceleratorProfile(
            "nvidia-h100-80gb", 80, "a3", 24, 200, 10, micro_batch_size=16, gradient_checkpointing=False
        ),
        AcceleratorProfile(
            "nvidia-h100-mega-80gb", 80, "a3", 24, 200, 10, micro_batch_size=16, gradient_checkpointing=False
        ),
        AcceleratorProfile("nvidia-l4", 24, "g2", 8, 32, 10, micro_batch_size=2, gradient_checkpointing=True),
    )
}


def profile(accelerator: str) -> AcceleratorProfile:
    return PROFILES[accelerator]
