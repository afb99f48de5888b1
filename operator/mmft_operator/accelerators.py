"""The GKE accelerators mmft supports: the one table every part reads (the API's enum and default, pod sizing,
training defaults, and the local cluster's simulated GKE nodes, mmft_localcluster.gke_nodes).

Keys are the GKE node label ``cloud.google.com/gke-accelerator``. Memory is what ``torch.cuda`` reports as the
device's total (the H200's measured on the benchmark machine, docs/bench-trainer.md; the others the same way on
those cards' usual drivers: nominal capacity less what the driver keeps). The machine's vCPUs, memory and local SSD
are those of GKE's machine type with eight such GPUs, the node a simulated GKE node models.

``autopilot_max`` holds, per GPU count Autopilot offers for the card, the most CPU and memory one pod may request
in total (the Cloud Storage FUSE sidecar included), from the page in ``AUTOPILOT_GPU_SOURCE``;
mmft_operator.autopilot_rules reads it for the simulated admission of the local cluster (docs/autopilot-admission.md).
Where ``autopilot_max_documented`` is False the figures were not on that page as read here: they are the machine's
less the share GKE keeps for itself, to be replaced by the page's numbers.
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
    # GPU count -> (vCPUs, GiB of memory): Autopilot's maximum total request of a pod with that many of these GPUs.
    autopilot_max: tuple[tuple[int, float, float], ...] = ()
    autopilot_max_documented: bool = True

    @property
    def autopilot_gpu_counts(self) -> tuple[int, ...]:
        return tuple(count for count, _, _ in self.autopilot_max)

    def autopilot_max_ephemeral_gib(self, gpus: int) -> int:
        # GPU nodes keep ephemeral storage on the machine's local SSD: a pod gets its GPUs' share of it.
        return self.machine_local_ssd_gib * gpus // self.machine_gpus

    @property
    def machine_family(self) -> str:
        """GKE's ``cloud.google.com/machine-family`` label: the machine type's series (a3-ultragpu-8g -> a3)."""
        return self.machine_type.split("-", 1)[0]


AUTOPILOT_GPU_SOURCE = "https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-resource-requests#hardware-min-max"
# The A2 and G2 rows as Autopilot states them (A100 40GB one GPU: 11 vCPU, 74Gi, also in GKE Warden's own refusal
# quoted in github.com/argoproj/argo-workflows/issues/13073); A3 High/Mega offer eight GPUs per pod on Autopilot.
_A100_40 = ((1, 11, 74), (2, 22, 148), (4, 46, 310), (8, 94, 632))
_A100_80 = ((1, 11, 148), (2, 22, 310), (4, 46, 632), (8, 94, 1300))
_L4 = ((1, 31, 115), (2, 23, 83), (4, 47, 177), (8, 95, 363))
_H100 = ((8, 206, 1795),)
# A3 Ultra and A4 (eight GPUs a pod): the machine less 2 vCPU and 5% of its memory, not yet checked on the page.
_H200 = ((8, 222, 2804),)
_B200 = ((8, 222, 3769),)

PROFILES: dict[str, AcceleratorProfile] = {
    profile.label: profile
    for profile in (
        AcceleratorProfile("nvidia-tesla-a100", "a2-highgpu-8g", 39.4, 8, 32, 10, 6, 96, 680, 3000,
                           autopilot_max=_A100_40),
        # 8 vCPUs a GPU, like the 40GB card: with the FUSE sidecar's 2 a one-GPU pod stays within Autopilot's 11.
        AcceleratorProfile("nvidia-a100-80gb", "a2-ultragpu-8g", 79.1, 8, 64, 10, 6, 96, 1360, 3000,
                           autopilot_max=_A100_80),
        AcceleratorProfile("nvidia-h100-80gb", "a3-highgpu-8g", 79.1, 24, 200, 10, 8, 208, 1872, 6000,
                           autopilot_max=_H100),
        AcceleratorProfile("nvidia-h100-mega-80gb", "a3-megagpu-8g", 79.1, 24, 200, 10, 8, 208, 1872, 6000,
                           autopilot_max=_H100),
        AcceleratorProfile("nvidia-l4", "g2-standard-96", 22.0, 8, 32, 10, 4, 96, 384, 3000, autopilot_max=_L4),
        # A3 Ultra: 8 x H200 141GB, 224 vCPUs (28 per GPU), 2952 GiB, 12 TiB local SSD. 139.8 GiB measured on the
        # benchmark's H200.
        AcceleratorProfile("nvidia-h200-141gb", "a3-ultragpu-8g", 139.8, 24, 200, 10, 8, 224, 2952, 12000,
                           autopilot_max=_H200, autopilot_max_documented=False),
        # A4: 8 x B200, 224 vCPUs (28 per GPU), 3968 GiB, 12 TiB local SSD. 178.0 GiB: 180 GB usable per GPU, as the
        # driver lists it (not measured here; the 15% headroom of the training defaults covers the difference).
        AcceleratorProfile("nvidia-b200", "a4-highgpu-8g", 178.0, 24, 200, 10, 8, 224, 3968, 12000,
                           autopilot_max=_B200, autopilot_max_documented=False),
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
