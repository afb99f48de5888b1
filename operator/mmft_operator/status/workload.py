"""What a workload Job and its pods say, as one verdict with a CamelCase reason a user can act on."""

from __future__ import annotations

import datetime as dt
import logging
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


def _pod_failure_reason(pods: list[dict[str, Any]], out_of_memory_advice: str) -> tuple[str, str] | None:
    """The most specific reason any failed pod shows, newest pods first."""
    failed = [pod for pod in pods if pod.get("status", {}).get("phase") == "Failed" and not _is_preempted(pod)]
    failed.sort(key=lambda pod: pod["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in failed:
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


def judge(
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: dt.datetime,
    unschedulable_grace_seconds: int,
    out_of_memory_advice: str = DEFAULT_OUT_OF_MEMORY_ADVICE,
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

    problem = _pending_problem(pods)
    if problem:
        reason, message, since = problem
        stalled = reason != "Unschedulable" or _older_than(since, now, unschedulable_grace_seconds)
        return WorkloadVerdict(PENDING, reason, message, stalled=stalled, **common)
    if preemptions:
        return WorkloadVerdict(
            PENDING,
            "Preempted",
            f"retrying after {preemptions} preemption(s); resumes from the last checkpoint",
            **common,
        )
    return WorkloadVerdict(PENDING, "Starting", "waiting for the workload pod to start", **common)


def _older_than(since: str, now: dt.datetime, seconds: int) -> bool:
    if not since:
        return seconds <= 0
    started = dt.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return (now - started).total_seconds() >= seconds


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
