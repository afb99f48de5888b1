"""Pod sizing per GKE accelerator: requests that stay inside Autopilot's per-GPU limits.

Training settings per accelerator (micro batch, adapter, checkpointing) live in `training_defaults`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AcceleratorProfile:
    label: str
    # Autopilot sizes the node from the pod's requests; these stay inside its per-GPU maximum.
    cpu_per_gpu: int
    memory_gib_per_gpu: int
    ephemeral_storage_gib: int


PROFILES: dict[str, AcceleratorProfile] = {
    profile.label: profile
    for profile in (
        AcceleratorProfile("nvidia-tesla-a100", 8, 32, 10),
        AcceleratorProfile("nvidia-a100-80gb", 10, 64, 10),
        AcceleratorProfile("nvidia-h100-80gb", 24, 200, 10),
        AcceleratorProfile("nvidia-h100-mega-80gb", 24, 200, 10),
        AcceleratorProfile("nvidia-l4", 8, 32, 10),
    )
}


def profile(accelerator: str) -> AcceleratorProfile:
    return PROFILES[accelerator]
