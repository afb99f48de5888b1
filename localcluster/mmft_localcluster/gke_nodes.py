"""Manifests of the simulated GKE Autopilot nodes (played by kwok) and of GKE's storage objects.

The labels, taints and capacities follow what GKE puts on its nodes, so that node selectors, tolerations and
resource requests written for GKE schedule the same way here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmft_operator.accelerators import DEFAULT_ACCELERATOR, PROFILES, AcceleratorProfile

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_SELECTOR = f"{KWOK_NODE_ANNOTATION}=fake"
# A kubelet sets this when it registers; only on such nodes does the attach/detach controller attach volumes.
CONTROLLER_MANAGED_ATTACH_DETACH = "volumes.kubernetes.io/controller-managed-attach-detach"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
SPOT_TAINT = {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}
REGION = "us-central1"
ZONES = ("us-central1-a", "us-central1-b")
PODS_PER_NODE = 1000
# The one node whose pods run in real containers (node.py); its kubelet's identity is system:node:<this>.
REAL_NODE_NAME = "mmft-real-node-0"


@dataclass(frozen=True)
class MachineShape:
    accelerator: str | None
    machine_type: str
    machine_family: str
    cpu: str
    memory: str
    ephemeral_storage: str
    gpus: int

    @property
    def short_name(self) -> str:
        return (self.accelerator or self.machine_type).removeprefix("nvidia-").removeprefix("tesla-")


def _shape_of(card: AcceleratorProfile) -> MachineShape:
    return MachineShape(card.label, card.machine_type, card.machine_family, str(card.machine_cpus),
                        f"{card.machine_memory_gib}Gi", f"{card.machine_local_ssd_gib}Gi", card.machine_gpus)


# One simulated machine per accelerator the API offers, from the operator's accelerator table (the one source).
GPU_SHAPES: dict[str, MachineShape] = {label: _shape_of(card) for label, card in PROFILES.items()}
CPU_SHAPE = MachineShape(None, "e2-standard-16", "e2", "16", "64Gi", "200Gi", 0)


def node_manifest(name: str, shape: MachineShape, zone: str, spot: bool = False) -> dict:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": shape.machine_type,
        "cloud.google.com/machine-family": shape.machine_family,
        "cloud.google.com/gke-nodepool": f"nap-{shape.machine_type}{'-spot' if spot else ''}",
        "cloud.google.com/gke-os-distribution": "cos",
        "cloud.google.com/gke-provisioning": "spot" if spot else "standard",
        "topology.kubernetes.io/region": REGION,
        "topology.kubernetes.io/zone": zone,
        "type": "kwok",
    }
    capacity = {
        "cpu": shape.cpu,
        "memory": shape.memory,
        "ephemeral-storage": shape.ephemeral_storage,
        "pods": str(PODS_PER_NODE),
    }
    taints = []
    if shape.accelerator:
        labels["cloud.google.com/gke-accelerator"] = shape.accelerator
        labels["cloud.google.com/gke-accelerator-count"] = str(shape.gpus)
        capacity[GPU_RESOURCE] = str(shape.gpus)
        taints.append(GPU_TAINT)
    if spot:
        labels["cloud.google.com/gke-spot"] = "true"
        taints.append(SPOT_TAINT)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", CONTROLLER_MANAGED_ATTACH_DETACH: "true"},
        },
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def gpu_nodes(accelerator: str, count: int, first_index: int = 0, spot: bool = False) -> list[dict]:
    try:
        shape = GPU_SHAPES[accelerator]
    except KeyError:
        raise ValueError(f"unknown accelerator {accelerator!r}; known: {', '.join(GPU_SHAPES)}") from None
    kind = "spot" if spot else "std"
    return [
        node_manifest(f"gke-sim-{shape.short_name}-{kind}-{index}", shape, ZONES[index % len(ZONES)], spot)
        for index in range(first_index, first_index + count)
    ]


def default_nodes() -> list[dict]:
    nodes = []
    for accelerator in GPU_SHAPES:
        nodes += gpu_nodes(accelerator, 2)
    nodes += gpu_nodes(DEFAULT_ACCELERATOR, 1, spot=True)
    nodes += [node_manifest(f"gke-sim-cpu-{index}", CPU_SHAPE, ZONES[index % len(ZONES)]) for index in range(2)]
    return nodes


STANDARD_RWO = "standard-rwo"
PD_CSI_DRIVER = "pd.csi.storage.gke.io"
GCSFUSE_CSI_DRIVER = "gcsfuse.csi.storage.gke.io"


def storage_manifests() -> list[dict]:
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STANDARD_RWO,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PD_CSI_DRIVER,
            "parameters": {"type": "pd-balanced"},
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": True,
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": PD_CSI_DRIVER},
            "spec": {"attachRequired": True, "podInfoOnMount": False, "volumeLifecycleModes": ["Persistent"]},
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "CSIDriver",
            "metadata": {"name": GCSFUSE_CSI_DRIVER},
            "spec": {
                "attachRequired": False,
                "podInfoOnMount": True,
                "requiresRepublish": True,
                "fsGroupPolicy": "ReadWriteOnceWithFSType",
                "volumeLifecycleModes": ["Persistent", "Ephemeral"],
            },
        },
    ]
