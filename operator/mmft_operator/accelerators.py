"""The GKE accelerators mmft supports: the one table every part reads (the API's enum and default, pod sizing,
training defaults, and the local cluster's simulated GKE nodes, mmft_localcluster.gke_nodes).

Keys are the GKE node label ``cloud.google.com/gke-accelerator``. Memory is what ``torch.cuda`` reports as the
device's total (the H200's measured on the benchmark machine, docs/bench-trainer.md; the others the same way on
those cards' usual drivers: nominal capacity less what the driver keeps). The machine's vCPUs, memory and local SSD
are those of GKE's machine type with eight such GPUs, the node a simulated GKE node models.
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
    # The whole machine (machine_type): what its node offers.
    machine_cpus: int
    machine_memory_gib: int
    machine_local_ssd_gib: int
    machine_gpus: int = 8

    @property
    def machine_family(self) -> str:
        """GKE's ``cloud.google.com/machine-family`` label: the machine type's series (a3-ultragpu-8g -> a3)."""
        return self.machine_type.split("-", 1)[0]


PROFILES: dict[str, AcceleratorProfile] = {
    profile.label: profile
    for profile in (
        AcceleratorProfile("nvidia-tesla-a100", "a2-highgpu-8g", 39.4, 8, 32, 10, 6, 96, 680, 3000),
        AcceleratorProfile("nvidia-a100-80gb", "a2-ultragpu-8g", 79.1, 10, 64, 10, 6, 96, 1360, 3000),
        AcceleratorProfile("nvidia-h100-80gb", "a3-highgpu-8g", 79.1, 24, 200, 10, 8, 208, 1872, 6000),
        AcceleratorProfile("nvidia-h100-mega-80gb", "a3-megagpu-8g", 79.1, 24, 200, 10, 8, 208, 1872, 6000),
        AcceleratorProfile("nvidia-l4", "g2-standard-96", 22.0, 8, 32, 10, 4, 96, 384, 3000),
        # A3 Ultra: 8 x H200 141GB, 224 vCPUs (28 per GPU), 2952 GiB, 12 TiB local SSD. 139.8 GiB measured on the
        # benchmark's H200.
        AcceleratorProfile("nvidia-h200-141gb", "a3-ultragpu-8g", 139.8, 24, 200, 10, 8, 224, 2952, 12000),
        # A4: 8 x B200, 224 vCPUs (28 per GPU), 3968 GiB, 12 TiB local SSD. 178.0 GiB: 180 GB usable per GPU, as the
        # driver lists it (not measured here; the 15% headroom of the training defaults covers the difference).
        AcceleratorProfile("nvidia-b200", "a4-highgpu-8g", 178.0, 24, 200, 10, 8, 224, 3968, 12000),
    )
}

LABELS: tuple[str, ...] = tuple(PROFILES)
# What a FineTuneJob or Evaluation gets when it names none: the seed's card.
DEFAULT_ACCELERATOR = "nvidia-tesla-a100"


def profile(accelerator: str) -> AcceleratorProfile:
    try:
        return PROFILES[accelerator]
    except KeyError:
        raise KeyError(f"unknown accelerator {accelerator!r}; known: {', '.join(PROFILES)}") from None
