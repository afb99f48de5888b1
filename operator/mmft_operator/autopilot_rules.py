"""GKE Autopilot's resource rules for pods, as one table: what the local cluster's simulated Autopilot admission
enforces (mmft_localcluster.autopilot_admission turns each row into admission policies) and what docs/autopilot-
admission.md shows. The GPU rows come from the accelerator table (mmft_operator.accelerators), not a copy.

What Autopilot does with a pod (source: AUTOPILOT_REQUESTS_SOURCE): it picks the row by compute class, or for a GPU
pod by accelerator and GPU count; a container's request below the row's minimum is raised to it; on a compute class
with a CPU:memory ratio the smaller of the pod's CPU and memory is raised into the ratio; limits are set equal to the
requests; a pod whose total request is above the row's maximum is refused, in GKE Warden's words. The Cloud Storage
FUSE sidecar that GKE's webhook injects into pods annotated ``gke-gcsfuse/volumes: "true"`` is one of the pod's
containers, so its requests (annotations ``gke-gcsfuse/{cpu,memory,ephemeral-storage}-request``, else the limit
annotation, else the driver's default) count in the pod's total.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmft_operator.accelerators import AUTOPILOT_GPU_SOURCE, PROFILES

AUTOPILOT_REQUESTS_SOURCE = "https://cloud.google.com/kubernetes-engine/docs/concepts/autopilot-resource-requests"
GCSFUSE_SIDECAR_SOURCE = (
    "https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-sidecar"
)
# GKE Warden's refusal of a pod over the maximum, as real clusters word it (github.com/argoproj/argo-workflows/
# issues/13073 quotes one); a space where Warden has a line break, which admission messages may not contain.
WARDEN_PREFIX = "GKE Warden rejected the request because it violates one or more constraints. Violations details: "
POD_LIMIT_CONSTRAINT = "[denied by autogke-pod-limit-constraints]"
GPU_CONSTRAINT = "[denied by autogke-gpu-limitation]"

RESOURCES = ("cpu", "memory", "ephemeral-storage")
GCSFUSE_VOLUMES_ANNOTATION = "gke-gcsfuse/volumes"
# What the sidecar asks when its pod's annotations name no size (the driver's defaults, GCSFUSE_SIDECAR_SOURCE).
GCSFUSE_SIDECAR_DEFAULT_REQUESTS = {"cpu": "250m", "memory": "256Mi", "ephemeral-storage": "5Gi"}

GENERAL_PURPOSE = "general-purpose"
ACCELERATOR_NODE_LABEL = "cloud.google.com/gke-accelerator"


@dataclass(frozen=True)
class ResourceRule:
    """One row: the pods it applies to, their per-container minimum and per-pod maximum requests."""

    key: str  # "general-purpose", or "<accelerator>/<gpus>"
    compute_class: str
    accelerator: str | None
    gpus: int
    minimum: dict[str, str]
    maximum: dict[str, str]
    # vCPU:GiB bounds of the pod's total requests (memory GiB per vCPU), None where Autopilot enforces none.
    memory_per_cpu: tuple[float, float] | None
    source: str
    documented: bool = True


# General-purpose: the default class of pods that name none and ask no GPU (the "bursting" minimums of clusters on
# GKE 1.29.2 and later).
GENERAL_PURPOSE_RULE = ResourceRule(
    key=GENERAL_PURPOSE,
    compute_class="General-purpose",
    accelerator=None,
    gpus=0,
    minimum={"cpu": "50m", "memory": "52Mi", "ephemeral-storage": "10Mi"},
    maximum={"cpu": "30", "memory": "110Gi", "ephemeral-storage": "10Gi"},
    memory_per_cpu=(1.0, 6.5),
    source=f"{AUTOPILOT_REQUESTS_SOURCE}#compute-class-min-max",
)

# GPU pods (Accelerator class): no ratio; a container's ephemeral storage at least 512Mi (GKE Warden's minimum,
# quoted in github.com/agones-dev/agones/issues/3411).
GPU_MINIMUM = {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "512Mi"}


def _gpu_rules() -> tuple[ResourceRule, ...]:
    return tuple(
        ResourceRule(
            key=f"{card.label}/{gpus}",
            compute_class="Accelerator",
            accelerator=card.label,
            gpus=gpus,
            minimum=dict(GPU_MINIMUM),
            maximum={"cpu": f"{cpu:g}", "memory": f"{memory:g}Gi",
                     "ephemeral-storage": f"{card.autopilot_max_ephemeral_gib(gpus)}Gi"},
            memory_per_cpu=None,
            source=AUTOPILOT_GPU_SOURCE,
            documented=card.autopilot_max_documented,
        )
        for card in PROFILES.values()
        for gpus, cpu, memory in card.autopilot_max
    )


RULES: tuple[ResourceRule, ...] = (GENERAL_PURPOSE_RULE, *_gpu_rules())
RULES_BY_KEY: dict[str, ResourceRule] = {rule.key: rule for rule in RULES}


def rule_for(accelerator: str | None, gpus: int) -> ResourceRule | None:
    """The row a pod falls under; None for a GPU count Autopilot does not offer for that accelerator."""
    return GENERAL_PURPOSE_RULE if not gpus else RULES_BY_KEY.get(f"{accelerator}/{gpus}")


def markdown_table() -> str:
    """The table as docs/autopilot-admission.md shows it (a unit test keeps the page equal to this)."""
    lines = [
        "| pods | min CPU / memory / ephemeral (a container) | max CPU / memory / ephemeral (the pod) "
        "| memory GiB per vCPU | source |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in RULES:
        pods = rule.compute_class if not rule.gpus else f"{rule.accelerator} x {rule.gpus}"
        ratio = f"{rule.memory_per_cpu[0]:g} to {rule.memory_per_cpu[1]:g}" if rule.memory_per_cpu else "-"
        source = f"[page]({rule.source})" + ("" if rule.documented else " (not on the page as read: estimate)")
        lines.append(
            f"| {pods} | {' / '.join(rule.minimum[r] for r in RESOURCES)} "
            f"| {' / '.join(rule.maximum[r] for r in RESOURCES)} | {ratio} | {source} |"
        )
    return "\n".join(lines) + "\n"
