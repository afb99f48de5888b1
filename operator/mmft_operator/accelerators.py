"""The GKE accelerators mmft supports: the one table every part reads (API enum, pod sizing, training defaults).

Keys are the GKE node label ``cloud.google.com/gke-accelerator``. Memory is what ``torch.cuda`` reports as the
device's total (the H200's measured on the benchmark machine, docs/bench-trainer.md; the others the same way on
those cards' usual drivers: nominal capacity less what the driver keeps).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AcceleratorProfile:
    label: str
    # The GKE machine type of eight such GPUs (one GPU's share of it is what a one-GPU pod can get).
    machine_type: str
    memory_gib: float
    # Autopilot sizes the node from the pod's requests; these stay inside its per-GPU maximum.
    cpu_per_gpu: int
    memory_gib_per_gpu: int
    ephemeral_storage_gib: int
    # vCPUs of one GPU's share of the machine less two (trainer process, GCS Fuse sidecar), at most 8.
    dataloader_workers: int


PROFILES: dict[str, AcceleratorProfile] = {
    profile.label: profile
    for profile in (
        AcceleratorProfile("nvidia-tesla-a100", "a2-highgpu-8g", 39.4, 8, 32, 10, 6),
        AcceleratorProfile("nvidia-a100-80gb", "a2-ultragpu-8g", 79.1, 10, 64, 10, 6),
        AcceleratorProfile("nvidia-h100-80gb", "a3-highgpu-8g", 79.1, 24, 200, 10, 8),
        AcceleratorProfile("nvidia-h100-mega-80gb", "a3-megagpu-8g", 79.1, 24, 200, 10, 8),
        AcceleratorProfile("nvidia-l4", "g2-standard-96", 22.0, 8, 32, 10, 4),
        # A3 Ultra: 8 x H200 141GB, 224 vCPUs (28 per GPU). 139.8 GiB measured on the benchmark's H200.
        AcceleratorProfile("nvidia-h200-141gb", "a3-ultragpu-8g", 139.8, 24, 200, 10, 8),
        # A4: 8 x B200, 224 vCPUs (28 per GPU). 178.0 GiB: 180 GB usable per GPU, as the driver lists it (not
        # measured here; the 15% headroom of the training defaults covers the difference).
        AcceleratorProfile("nvidia-b200", "a4-highgpu-8g", 178.0, 24, 200, 10, 8),
    )
}

LABELS: tuple[str, ...] = tuple(PROFILES)


def profile(accelerator: str) -> AcceleratorProfile:
    try:
        return PROFILES[accelerator]
    except KeyError:
        raise KeyError(f"unknown accelerator {accelerator!r}; known: {', '.join(PROFILES)}") from None
