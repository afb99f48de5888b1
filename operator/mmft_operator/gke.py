"""GKE's scheduling facts the operator relies on: node labels it selects on, and what each provisioning model means.

Sources (Google's GKE documentation): "Run fault-tolerant workloads at lower costs in Spot Pods"
(how-to/autopilot-spot-pods: nodeSelector cloud.google.com/gke-spot=true, at most 25 s of grace on preemption);
"About flex-start provisioning mode" (concepts/dws: GPUs for up to seven days) and "Run a small batch workload with
flex-start" (nodeSelector cloud.google.com/gke-flex-start=true next to cloud.google.com/gke-accelerator);
"Consume reserved zonal resources" (cloud.google.com/reservation-name with cloud.google.com/reservation-affinity).
The API (its enum, its CEL rules) and the builders read them from here.
"""

from __future__ import annotations

from typing import Literal

ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
SPOT_LABEL = "cloud.google.com/gke-spot"
FLEX_START_LABEL = "cloud.google.com/gke-flex-start"
# Autopilot migrates Pods selecting preemptible VMs to Spot Pods: selecting it is choosing Spot behind the API's back.
PREEMPTIBLE_LABEL = "cloud.google.com/gke-preemptible"
# Selectors users add themselves (spec.scheduling.nodeSelector); named here for the docs and tests.
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"
RESERVATION_NAME_LABEL = "cloud.google.com/reservation-name"
RESERVATION_AFFINITY_LABEL = "cloud.google.com/reservation-affinity"

Provisioning = Literal["onDemand", "spot", "flexStart"]
PROVISIONING_MODELS: tuple[str, ...] = ("onDemand", "spot", "flexStart")
# What a CPU-only pod can ask for: flex-start provisions accelerators only.
CpuProvisioning = Literal["onDemand", "spot"]

# Node selector that asks GKE for each provisioning model (on-demand is what a pod gets when it asks for nothing).
PROVISIONING_NODE_SELECTOR: dict[str, dict[str, str]] = {
    "onDemand": {},
    "spot": {SPOT_LABEL: "true"},
    "flexStart": {FLEX_START_LABEL: "true"},
}

# Node selector keys the operator sets from spec.compute: a user's own value would fight the operator's
# (key -> the field to set instead).
OPERATOR_NODE_SELECTOR_KEYS: dict[str, str] = {
    ACCELERATOR_LABEL: "compute.accelerator",
    SPOT_LABEL: "compute.provisioning",
    FLEX_START_LABEL: "compute.provisioning",
    PREEMPTIBLE_LABEL: "compute.provisioning",
}

# Autopilot grants a preempted Spot Pod at most 25 s, whatever terminationGracePeriodSeconds asks for.
SPOT_GRACE_SECONDS = 25
# Flex-start VMs run for at most seven days; a run planned longer is cut off by GKE, not by the Job.
FLEX_START_MAX_RUN_SECONDS = 7 * 24 * 3600


def provisioning_tolerations(provisioning: str) -> list[dict[str, str]]:
    """Autopilot adds these itself; GKE Standard pools tainted for Spot or flex-start need them spelled out."""
    label = {"spot": SPOT_LABEL, "flexStart": FLEX_START_LABEL}.get(provisioning)
    if label is None:
        return []
    return [{"key": label, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
