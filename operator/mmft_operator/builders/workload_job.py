"""The Job skeleton shared by DatasetPrep and Evaluation: one non-root pod with the bucket mounted, reporting back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmft_operator import naming
from mmft_operator.api.common import GcsBucket, PodMetadata
from mmft_operator.api.pod_hatches import PodHatches
from mmft_operator.contracts.exit_codes import FAIL_AT_ONCE
from mmft_operator.settings import OperatorSettings

from . import common
from .common import Owner

WORKLOAD_CONTAINER = "workload"


@dataclass(frozen=True)
class WorkloadPod:
    component: str
    command: list[str]
    image: str
    service_account_name: str
    bucket: GcsBucket
    pod_metadata: PodMetadata
    requests: dict[str, str]
    report_file: str
    active_deadline_seconds: int
    backoff_limit: int
    attempt: int  # spec.retry: stamped on the Job so a replaced attempt's Job is never judged as the new one
    # The spec's escape hatches (scheduling, env, envFrom, extra volumes).
    hatches: PodHatches
    gpus: int = 0
    provisioning: str = "onDemand"
    # Memory-backed /dev/shm for PyTorch data-loader workers; None keeps the container default.
    shm_size: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    # A claim of this size (generic ephemeral volume, deleted with the pod) for /scratch; None: an emptyDir, which
    # counts against the pod's ephemeral storage (at most 10Gi on Autopilot's general-purpose pods, FUSE sidecar's
    # share included: mmft_operator.autopilot_rules).
    scratch_volume_size: str | None = None
    extra_env: list[dict[str, Any]] = field(default_factory=list)


def _scratch_volume(size: str | None) -> dict[str, Any]:
    if size is None:
        return {"name": "scratch", "emptyDir": {}}
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    return {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}


def build_workload_job(owner: Owner, pod: WorkloadPod, settings: OperatorSettings) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": dict(pod.requests)}
    if pod.gpus:
        resources["requests"]["nvidia.com/gpu"] = str(pod.gpus)
        resources["limits"] = {"nvidia.com/gpu": str(pod.gpus)}
    container = {
        "name": WORKLOAD_CONTAINER,
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "command": pod.command,
        "env": [*common.workload_env(owner, pod.report_file, settings), *pod.extra_env],
        "resources": resources,
        "securityContext": common.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [common.gcsfuse_mount(pod.bucket), {"name": "scratch", "mountPath": "/scratch"}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": pod.service_account_name,
        "securityContext": common.pod_security_context(settings),
        "containers": [container],
        "volumes": [common.gcsfuse_volume(pod.bucket, settings), _scratch_volume(pod.scratch_volume_size)],
    }
    if pod.shm_size:
        container["volumeMounts"].append(common.shm_mount())
        pod_spec["volumes"].append(common.shm_volume(pod.shm_size))
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    tolerations = common.gpu_tolerations(pod.provisioning, gpu=bool(pod.gpus))
    if tolerations:
        pod_spec["tolerations"] = tolerations
    common.apply_hatches(pod_spec, container, pod.hatches)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": common.metadata(
            owner, naming.job(owner.name, pod.component), pod.component, naming.attempt_annotations(pod.attempt)
        ),
        # No ttlSecondsAfterFinished: the operator sets it by outcome once status records the outcome, so the Job is
        # never collected before its verdict is kept.
        "spec": {
            "backoffLimit": pod.backoff_limit,
            "activeDeadlineSeconds": pod.active_deadline_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": WORKLOAD_CONTAINER,
                            "operator": "In",
                            # Invalid config or data, GPU out of memory: a retry would fail the same way.
                            "values": sorted(FAIL_AT_ONCE),
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {
                    "labels": common.pod_labels(owner, pod.component, pod.pod_metadata),
                    "annotations": common.pod_annotations(pod.bucket, pod.pod_metadata, settings),
                },
                "spec": pod_spec,
            },
        },
    }


def report_children(owner: Owner, component: str, service_account: str) -> list[dict[str, Any]]:
    return [
        common.build_report_config_map(owner, component),
        common.build_report_role(owner, component),
        common.build_report_role_binding(owner, component, service_account),
    ]
