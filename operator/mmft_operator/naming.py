"""Deterministic names and labels of the children of each mmft resource."""

from __future__ import annotations

MANAGED_BY = "mmft-operator"
OWNER_KIND_LABEL = "mmft.io/owner-kind"
OWNER_NAME_LABEL = "mmft.io/owner-name"
COMPONENT_LABEL = "app.kubernetes.io/component"
SPEC_HASH_ANNOTATION = "mmft.io/spec-hash"
# On a Job's pod template: the spec hash of the config it mounts, so that a config change changes the Job's.
CONFIG_HASH_ANNOTATION = "mmft.io/config-hash"
# Created once, never patched: the workload owns the data (report ConfigMap) or the API forbids changes (PVC).
CREATE_ONLY_ANNOTATION = "mmft.io/create-only"
# On a workload Job created for spec.retry N > 0: which attempt it runs (absent: the first, 0).
ATTEMPT_ANNOTATION = "mmft.io/attempt"


# The Job controller labels a Job's pods with the Job's UID: pods of a replaced Job that are still terminating share
# the Job's name, never its UID; the workloads stamp their reports with it (downward API).
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"


def attempt_annotations(retry: int) -> dict[str, str]:
    return {ATTEMPT_ANNOTATION: str(retry)} if retry else {}


def labels(kind: str, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "mmft",
        "app.kubernetes.io/instance": name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "mmft",
        **owner_labels(kind, name),
    }


def owner_labels(kind: str, name: str) -> dict[str, str]:
    """The labels every child of one resource carries: what its children are listed by."""
    return {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_KIND_LABEL: kind.lower(), OWNER_NAME_LABEL: name}


def selector(kind: str, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": name,
        COMPONENT_LABEL: component,
        OWNER_KIND_LABEL: kind.lower(),
    }


def config_map(name: str) -> str:
    return f"{name}-axolotl"


# Kinds share a namespace and users give a FineTuneJob and its Evaluation the same name: the kind is in the name.
def report_config_map(kind: str, name: str) -> str:
    return f"{name}-{kind.lower()}-report"


def report_role(kind: str, name: str) -> str:
    return f"{name}-{kind.lower()}-report-writer"


def job(name: str, component: str) -> str:
    return f"{name}-{component}"


def output_pvc(name: str) -> str:
    return f"{name}-output"


def rendezvous_service(name: str) -> str:
    return f"{name}-rdzv"


def tensorboard(name: str) -> str:
    return f"{name}-tensorboard"
