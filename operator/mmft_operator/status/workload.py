"""What a workload Job and its pods say, as one verdict with a CamelCase reason a user can act on."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from mmft_operator.contracts.exit_codes import CONFIG_INVALID, DATA_INVALID, OUT_OF_MEMORY
from mmft_operator.contracts.progress import WorkloadReport

log = logging.getLogger(__name__)

PENDING, SUSPENDED, RUNNING, SUCCEEDED, FAILED = "Pending", "Suspended", "Running", "Succeeded", "Failed"

# Waiting reasons that do not resolve by waiting: the user must fix the image, secret or config.
_STUCK_WAITING = {
    "ErrImagePull": "ImagePullError",
    "ImagePullBackOff": "ImagePullError",
    "InvalidImageName": "ImagePullError",
    "CreateContainerConfigError": "ContainerConfigError",
    "CreateContainerError": "ContainerConfigError",
}


# Warning events that say a pod cannot start although the Job and pod objects do not show it: the Job controller's
# admission refusal (no pod appears) and the kubelet's / attach-detach controller's volume failures (the pod stays
# ContainerCreating). The controller passes these in (WorkloadEvent); docs/troubleshooting.md says what to do.
POD_CREATE_FAILED = "FailedCreate"
VOLUME_FAILURES = ("FailedMount", "FailedAttachVolume")
START_FAILURE_EVENT_REASONS = (POD_CREATE_FAILED, *VOLUME_FAILURES)


@dataclass(frozen=True)
class WorkloadEvent:
    """A Warning event about the workload's Job or one of its pods, as the controller observed it."""

    kind: str  # the involved object's kind: "Job" or "Pod"
    name: str
    uid: str  # the involved object's uid: an event about an earlier object of the same name is not this one's
    reason: str
    message: str
    first_seen: str  # RFC 3339, seconds
    last_seen: str


@dataclass(frozen=True)
class WorkloadVerdict:
    phase: str
    reason: str
    message: str
    stalled: bool = False
    start_time: str | None = None
    completion_time: str | None = None
    preemptions: int = 0
    failures: int = 0
    # Seconds until this verdict turns Stalled by time alone (a grace period running out): the controller looks
    # again then, since nothing in the cluster changes to trigger it. None: time alone changes nothing.
    stalls_in: float | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in (SUCCEEDED, FAILED)


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in obj.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def _terminated_states(pod: dict[str, Any]) -> list[dict[str, Any]]:
    states = []
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        for key in ("state", "lastState"):
            terminated = (status.get(key) or {}).get("terminated")
            if terminated:
                states.append(terminated)
    return states


def _is_preempted(pod: dict[str, Any]) -> bool:
    return pod.get("status", {}).get("phase") == "Failed" and _condition(pod, "DisruptionTarget") is not None


# What a kind's resource can lower when its workload runs out of GPU memory (each kind names its own fields).
DEFAULT_OUT_OF_MEMORY_ADVICE = "lower the batch size"


# The kubelet's pod status reason when it evicts a pod (pkg/kubelet/eviction). A pod over its ephemeral-storage limit
# or an emptyDir over its sizeLimit is evicted without DisruptionTarget, so it counts as a failure and a retry fails
# the same way; a node-pressure eviction adds DisruptionTarget and counts as a preemption.
KUBELET_EVICTED = "Evicted"
# Words of the kubelet's messages for the limits above ("... local ephemeral storage limit ...", "Usage of EmptyDir
# volume ... exceeds the limit ...").
_STORAGE_EVICTION_WORDS = ("ephemeral", "EmptyDir")
EPHEMERAL_STORAGE_ADVICE = (
    "raise the ephemeral storage request (compute.ephemeralStorage; resources.ephemeralStorage of a DatasetPrep), "
    "which on Autopilot is also the pod's limit"
)


def _eviction(pod: dict[str, Any]) -> tuple[str, str] | None:
    status = pod.get("status", {})
    if status.get("reason") != KUBELET_EVICTED:
        return None
    message = (status.get("message") or "").strip() or "no message"
    if any(word in message for word in _STORAGE_EVICTION_WORDS):
        return "Evicted", f"the kubelet evicted the pod: {message} Fix: {EPHEMERAL_STORAGE_ADVICE}"
    return "Evicted", f"the kubelet evicted the pod: {message}"


def _pod_failure_reason(pods: list[dict[str, Any]], out_of_memory_advice: str) -> tuple[str, str] | None:
    """The most specific reason any failed pod shows, newest pods first."""
    failed = [pod for pod in pods if pod.get("status", {}).get("phase") == "Failed" and not _is_preempted(pod)]
    failed.sort(key=lambda pod: pod["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in failed:
        # Before the containers' states: an evicted container shows only the kill (exit code 137).
        evicted = _eviction(pod)
        if evicted is not None:
            return evicted
        for terminated in _terminated_states(pod):
            code = terminated.get("exitCode")
            detail = (terminated.get("message") or "").strip()
            if code == CONFIG_INVALID:
                return "ConfigInvalid", detail or f"the workload rejected its configuration (exit code {code})"
            if terminated.get("reason") == "OOMKilled":
                return (
                    "OOMKilled",
                    "the container ran out of memory (OOMKilled): lower microBatchSize or "
                    "sequenceLen, enable gradientCheckpointing, or raise compute.memory",
                )
            if code == OUT_OF_MEMORY:
                return "OutOfMemory", f"the GPU ran out of memory (exit code {code}): {out_of_memory_advice}"
            if code == DATA_INVALID:
                return "DataInvalid", detail or f"the workload found its input data unusable (exit code {code})"
            if code not in (None, 0):
                return "WorkloadFailed", detail or f"container exited with code {code}"
    return None


def _pending_problem(pods: list[dict[str, Any]]) -> tuple[str, str, str] | None:
    """(reason, message, since) for the first pod that cannot start."""
    for pod in pods:
        status = pod.get("status", {})
        if status.get("phase") != "Pending":
            continue
        for container in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _STUCK_WAITING:
                message = f"{waiting['reason']}: {waiting.get('message', '')}".strip().rstrip(":")
                return _STUCK_WAITING[waiting["reason"]], message, ""
        for condition in status.get("conditions", []) or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                if condition.get("reason") == "Unschedulable":
                    return "Unschedulable", condition.get("message", ""), condition.get("lastTransitionTime", "")
    return None


def _start_failure(
    job: dict[str, Any], pods: list[dict[str, Any]], events: Sequence[WorkloadEvent]
) -> tuple[str, str, str] | None:
    """(reason, message, since) when a Warning event says the pod cannot be created or cannot mount its volumes."""
    job_uid = job["metadata"].get("uid")
    active = [pod for pod in pods if pod.get("status", {}).get("phase") in (None, "Pending")]
    refusals = [event for event in events
                if event.kind == "Job" and event.uid == job_uid and event.reason == POD_CREATE_FAILED]
    newest_pod = max((pod["metadata"].get("creationTimestamp", "") for pod in active), default="")
    if refusals:
        last = max(refusals, key=lambda event: event.last_seen)
        # A pod created after the last refusal means the refusal no longer applies (the policy or quota changed).
        if last.last_seen >= newest_pod:
            first = min(event.first_seen for event in refusals)
            return "PodRejected", last.message, first
    for pod in active:
        uid = pod["metadata"].get("uid")
        failures = [event for event in events
                    if event.kind == "Pod" and event.uid == uid and event.reason in VOLUME_FAILURES]
        if failures:
            last = max(failures, key=lambda event: event.last_seen)
            return "VolumeMountFailed", f"{last.reason}: {last.message}", min(e.first_seen for e in failures)
    return None


def judge(
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: dt.datetime,
    unschedulable_grace_seconds: int,
    out_of_memory_advice: str = DEFAULT_OUT_OF_MEMORY_ADVICE,
    events: Sequence[WorkloadEvent] = (),
    start_failure_grace_seconds: int = 0,
) -> WorkloadVerdict:
    if job is None:
        return WorkloadVerdict(PENDING, "Creating", "creating the workload Job")
    job_status = job.get("status", {})
    start = job_status.get("startTime") or job["metadata"].get("creationTimestamp")
    preemptions = sum(1 for pod in pods if _is_preempted(pod))
    failures = sum(1 for pod in pods if pod.get("status", {}).get("phase") == "Failed" and not _is_preempted(pod))
    common = {"start_time": start, "preemptions": preemptions, "failures": failures}

    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if complete:
        finished = job_status.get("completionTime") or complete.get("lastTransitionTime")
        return WorkloadVerdict(SUCCEEDED, "Succeeded", "the workload completed", completion_time=finished, **common)

    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        finished = failed.get("lastTransitionTime")
        if failed.get("reason") == "DeadlineExceeded":
            reason, message = "DeadlineExceeded", "the run exceeded activeDeadlineSeconds"
        else:
            reason, message = _pod_failure_reason(pods, out_of_memory_advice) or (
                "BackoffLimitExceeded",
                failed.get("message") or "the workload failed too often",
            )
        return WorkloadVerdict(FAILED, reason, message, stalled=True, completion_time=finished, **common)

    if job.get("spec", {}).get("suspend"):
        queued = "kueue.x-k8s.io/queue-name" in job["metadata"].get("labels", {})
        reason = "QueuedByKueue" if queued else "Suspended"
        message = "waiting for Kueue to admit the Job" if queued else "the Job is suspended (spec.suspend)"
        return WorkloadVerdict(SUSPENDED, reason, message, **common)

    running = [pod for pod in pods if pod.get("status", {}).get("phase") == "Running"]
    if running:
        return WorkloadVerdict(RUNNING, "Running", f"{len(running)} pod(s) running", **common)

    start_failure = _start_failure(job, pods, events)
    if start_failure:
        reason, message, since = start_failure
        return _waiting_verdict(reason, message, since, now, start_failure_grace_seconds, common)

    problem = _pending_problem(pods)
    if problem:
        reason, message, since = problem
        if reason == "Unschedulable":
            return _waiting_verdict(reason, message, since, now, unschedulable_grace_seconds, common)
        return WorkloadVerdict(PENDING, reason, message, stalled=True, **common)
    if preemptions:
        return WorkloadVerdict(
            PENDING,
            "Preempted",
            f"retrying after {preemptions} preemption(s); resumes from the last checkpoint",
            **common,
        )
    return WorkloadVerdict(PENDING, "Starting", "waiting for the workload pod to start", **common)


def _waiting_verdict(
    reason: str, message: str, since: str, now: dt.datetime, grace_seconds: int, common: dict[str, Any]
) -> WorkloadVerdict:
    """Pending for a reason that may still resolve by itself: Stalled once it has lasted `grace_seconds`."""
    left = _seconds_left(since, now, grace_seconds)
    return WorkloadVerdict(PENDING, reason, message, stalled=left <= 0, stalls_in=left if left > 0 else None,
                           **common)


def _seconds_left(since: str, now: dt.datetime, seconds: int) -> float:
    """Seconds until `seconds` have passed since `since` (0 or less: they have; an unknown start counts from now)."""
    if not since:
        return float(seconds)
    started = dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return seconds - (now - started).total_seconds()


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not (start and end):
        return None
    parse = lambda stamp: dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")  # noqa: E731 - RFC 3339, as the API
    return max(0.0, (parse(end) - parse(start)).total_seconds())


def pod_startup(pods: list[dict[str, Any]], container: str) -> dict[str, float]:
    """Seconds the newest pod spent waiting for a node and from scheduling to ``container``'s start, from the pod's
    own timestamps (creation, the PodScheduled condition, the container's startedAt). Stages not reached are left
    out."""
    if not pods:
        return {}
    pod = max(pods, key=lambda candidate: candidate["metadata"].get("creationTimestamp", ""))
    created = pod["metadata"].get("creationTimestamp")
    scheduled = next(
        (
            condition.get("lastTransitionTime")
            for condition in pod.get("status", {}).get("conditions", []) or []
            if condition.get("type") == "PodScheduled" and condition.get("status") == "True"
        ),
        None,
    )
    started = None
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        if status.get("name") == container:
            state = status.get("state") or {}
            started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
    stages = {
        "waitingForNodeSeconds": _seconds_between(created, scheduled),
        "pullingImageSeconds": _seconds_between(scheduled, started),
    }
    return {name: seconds for name, seconds in stages.items() if seconds is not None}


def progress_summary(done: int, total: int | None) -> str:
    """``done/total (percent)`` for a printer column; ``done`` alone while the total is unknown."""
    if not total:
        return str(done)
    return f"{done}/{total} ({100 * done // total}%)"


KindReport = TypeVar("KindReport", bound=WorkloadReport)


def kind_report(
    model: type[KindReport], report: WorkloadReport | None, where: str | None = None, kind: str = "workload"
) -> KindReport | None:
    """The kind's typed report of the envelope the engine read, or None when there is none.

    A part that does not fit the kind's model (progress, outputs or results of a workload of another version, a
    bug) is left out, named in a warning (``kind``'s, e.g. "evaluation results") when ``where`` (namespace/name) is
    given; the other parts are still read,
    so a stale progress never hides an evaluation's results. Never fatal: status then says what the Job says."""
    if report is None:
        return None
    try:
        return model.from_report(report)
    except ValidationError as error:
        unfit = {str(problem["loc"][0]) for problem in error.errors() if problem["loc"]}
        if where is not None:
            log.warning("%s: ignoring unreadable %s %s: %s", where, kind, " and ".join(sorted(unfit)),
                        error.errors()[0]["msg"])
    try:
        return model.model_validate(report.model_dump(mode="json", exclude_none=True, exclude=unfit))
    except ValidationError:
        return None
