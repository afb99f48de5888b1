"""When the spec locks, and replacing a Job that is still waiting. Pure: no API client, no clock, no env.

A run starts when a pod of its Job first runs, not when the Job is created: until then the Job may wait for a node
(unschedulable, an accelerator with no capacity), for quota or for Kueue's admission, and nothing of it has run. The
fields that shape the run stay changeable while it waits (the CRD's CEL rules key on status.runStartedTime); a Job
is create-only, so when the Job the spec now asks for differs from the waiting one, the waiting one is deleted and
the new one created once it is gone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mmft_operator import naming
from mmft_operator.builders.common import with_spec_hash

from .lifecycle import pods_of

ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
REPLACED_REASON = "WaitingJobReplaced"


@dataclass(frozen=True)
class Replacement:
    """The waiting Job to delete, and the Job the spec asks for instead."""

    job: dict[str, Any]
    desired: dict[str, Any]


def first_run_time(pods: list[dict[str, Any]]) -> str | None:
    """When the earliest of these pods started running (its containers' startedAt), or None if none has run."""
    started = [stamp for pod in pods if (stamp := _run_start(pod)) is not None]
    return min(started) if started else None


def has_run(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """Whether any pod of this Job ever ran (the Job's own counters cover pods already gone)."""
    job_status = job.get("status") or {}
    return bool(job_status.get("succeeded")) or first_run_time(pods_of(job, pods)) is not None


def replacement(
    job: dict[str, Any] | None, desired_job: dict[str, Any] | None, status: dict[str, Any],
    pods: list[dict[str, Any]],
) -> Replacement | None:
    """The waiting Job to replace: the spec now asks for another Job, and the run has not started.

    Never a Job a pod of which ran (as observed, or as status.runStartedTime recorded; the controller reads the pods
    again, fresh, before it deletes), that finished, that someone else stamped, or that differs only in `suspend`
    (flipped in place, or owned by Kueue).
    """
    if job is None or desired_job is None or status.get("runStartedTime") or _finished(job) or has_run(job, pods):
        return None
    stamp = (job["metadata"].get("annotations") or {}).get(naming.SPEC_HASH_ANNOTATION)
    if stamp is None or stamp == desired_job["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION]:
        return None
    if stamp in {_stamp_with_suspend(desired_job, suspend) for suspend in (False, True)}:
        return None
    return Replacement(job, desired_job)


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What differs between two Jobs' pods, as a user names it: accelerator, GPUs, pods, Spot. `old` is the Job as
    the API returns it (the watch cache keeps no pod template)."""
    old_view, new_view = _compute_view(old), _compute_view(new)
    changes = [f"{what} {was} -> {new_view.get(what)}" for what, was in old_view.items() if was != new_view.get(what)]
    return ", ".join(changes) if changes else "its spec changed"


def _compute_view(job: dict[str, Any] | None) -> dict[str, str]:
    if job is None or "template" not in job.get("spec", {}):
        return {}
    pod_spec = job["spec"]["template"]["spec"]
    gpus = sum(
        int((container.get("resources") or {}).get("limits", {}).get(GPU_RESOURCE, 0))
        for container in pod_spec.get("containers", [])
    )
    spot = any(toleration.get("key") == "cloud.google.com/gke-spot" for toleration in pod_spec.get("tolerations", []))
    return {
        "accelerator": (pod_spec.get("nodeSelector") or {}).get(ACCELERATOR_LABEL, "none"),
        "GPUs per pod": str(gpus),
        "pods": str(job["spec"].get("parallelism", 1)),
        "spot": str(spot).lower(),
    }


def _stamp_with_suspend(desired_job: dict[str, Any], suspend: bool) -> str:
    """The spec hash the desired Job would carry with this suspend (builders stamp the Job as built)."""
    unstamped = copy.deepcopy(desired_job)
    annotations = unstamped["metadata"].get("annotations", {})
    annotations.pop(naming.SPEC_HASH_ANNOTATION, None)
    if not annotations:
        unstamped["metadata"].pop("annotations", None)
    unstamped["spec"]["suspend"] = suspend
    if not suspend and "suspend" not in desired_job["spec"]:
        del unstamped["spec"]["suspend"]  # a kind whose Job never suspends builds it without the field
    return with_spec_hash(unstamped)["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION]


def _finished(job: dict[str, Any]) -> bool:
    return any(
        condition.get("type") in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
        and condition.get("status") == "True"
        for condition in (job.get("status") or {}).get("conditions") or []
    )


def _run_start(pod: dict[str, Any]) -> str | None:
    """When a main container of the pod started, or None while none has (init containers and sidecars waiting for
    a node or an image do not count)."""
    status = pod.get("status") or {}
    stamps = []
    for container in status.get("containerStatuses") or []:
        for key in ("state", "lastState"):
            state = container.get(key) or {}
            stamp = (state.get("running") or state.get("terminated") or {}).get("startedAt")
            if stamp:
                stamps.append(stamp)
    if stamps:
        return min(stamps)
    if status.get("phase") in ("Running", "Succeeded"):
        return status.get("startTime") or pod["metadata"].get("creationTimestamp")
    return None
