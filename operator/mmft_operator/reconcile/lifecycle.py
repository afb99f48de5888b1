"""A run's lifecycle rules: finished work never runs again, a Failed run is retried in place, the finished Job is
kept by outcome. Pure: the planner (`engine.py`) asks, the controller applies.

Terminal means terminal. Once status records Succeeded or Failed for the current attempt, the workload Job is never
created again: not after the TTL controller collected it, not after an operator restart, not after someone deleted it.
The verdict (phase, reason, conditions, times) is never recomputed; what the workload reported can still be added
while the Job exists (a report read after the Job's end) but nothing is lost when the Job, its pods or the report go.
The `JobRetained` condition says whether the finished Job and its logs still exist.

Retry in place. `spec.retry` is a counter (validated at the API server: it only increases, and only while the run is
Failed). Raising it starts attempt `spec.retry`: the failed attempt's Job is deleted (`Kube.delete_owned`), and once
it is gone a new Job of the same name is created, stamped with the attempt (`naming.ATTEMPT_ANNOTATION`) so a Job of
an earlier attempt is never judged as the new one. `status.attempt` records the attempt status describes.

Retention. Jobs are created without `ttlSecondsAfterFinished`; once status records the outcome the operator sets it:
`spec.ttlSecondsAfterFinished` when given, else the operator's setting for that outcome (a failed run's logs are kept
longer). The Job is therefore never collected before its verdict is in status.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mmft_operator import naming
from mmft_operator.contracts.progress import WorkloadReport
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload
from mmft_operator.status.conditions import ConditionUpdate

TERMINAL_PHASES = (workload.SUCCEEDED, workload.FAILED)

# What the planner does with a resource's workload Job this pass.
RUN = "Run"  # today's flow: create the Job if missing, judge it
FINAL = "Final"  # the recorded outcome stands: never create the Job, never recompute the verdict
REPLACE = "Replace"  # a retry: delete the Job of an earlier attempt, create the new one once it is gone

JOB_RETAINED = "JobRetained"
# Status fields the verdict made: kept exactly as recorded once the outcome is final.
_VERDICT_FIELDS = (
    "phase", "reason", "conditions", "startTime", "completionTime", "runStartedTime", "attempt", "resolved",
)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def job_attempt(job: dict[str, Any]) -> int:
    """The attempt a Job was created for (0 for a Job without the annotation: a first run, or an older operator's)."""
    return int((job["metadata"].get("annotations") or {}).get(naming.ATTEMPT_ANNOTATION, "0"))


def retry_requested(status: dict[str, Any], retry: int) -> bool:
    """A Failed run whose spec.retry was raised past the attempt status records."""
    return status.get("phase") == workload.FAILED and retry > status.get("attempt", 0)


def current_attempt(status: dict[str, Any], retry: int) -> int:
    """The attempt this pass works on: spec.retry for a run not started yet or a retry just requested, else the one
    status records (a raised counter on a run that is not Failed waits: the API server refuses that change anyway)."""
    if "attempt" not in status or retry_requested(status, retry):
        return retry
    return status["attempt"]


def stage(status: dict[str, Any], retry: int, job: dict[str, Any] | None) -> str:
    """RUN, FINAL or REPLACE for a resource with this recorded status, spec.retry and observed own Job."""
    if status.get("phase") in TERMINAL_PHASES and not retry_requested(status, retry):
        return FINAL
    if job is not None and job_attempt(job) < current_attempt(status, retry):
        return REPLACE
    return RUN


def replacing_verdict(attempt: int, job: dict[str, Any]) -> workload.WorkloadVerdict:
    name = job["metadata"]["name"]
    return workload.WorkloadVerdict(
        workload.PENDING,
        "Retrying",
        f"attempt {attempt}: deleting Job {name} of the failed attempt {job_attempt(job)}; "
        "the new Job is created once it is gone",
    )


def pods_of(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods of this very Job (by its UID, from the Job controller's label or the pod's controller reference):
    the pods of a replaced or deleted Job, still terminating, have the same job-name label."""
    if job is None:
        return []
    uid = job["metadata"].get("uid")
    return [pod for pod in pods if _job_uid(pod) == uid]


def report_of(job: dict[str, Any] | None, report: WorkloadReport | None) -> WorkloadReport | None:
    """The report unless it names another Job than this one: the report ConfigMap outlives a failed attempt's Job (or
    one deleted by hand), and its new Job's pod may take minutes to write its own. A report without a Job UID (a
    workload of an earlier version) and one read while no Job exists are taken as they are."""
    if report is None or job is None or report.jobUid is None:
        return report
    return report if report.jobUid == job["metadata"].get("uid") else None


def _job_uid(pod: dict[str, Any]) -> str | None:
    meta = pod["metadata"]
    labelled = (meta.get("labels") or {}).get(naming.JOB_CONTROLLER_UID_LABEL)
    if labelled:
        return labelled
    return next((ref.get("uid") for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)


def final_status(recorded: dict[str, Any], recomputed: dict[str, Any] | None) -> dict[str, Any]:
    """The status of a resource whose outcome is recorded: the verdict as recorded; the rest as recorded with what a
    still existing Job and report add (`recomputed`, None once the Job is gone). Never loses a recorded value."""
    kept = _merged(recorded, recomputed or {})
    for key in _VERDICT_FIELDS:
        if key in recorded:
            kept[key] = recorded[key]
    return kept


def _merged(recorded: dict[str, Any], recomputed: dict[str, Any]) -> dict[str, Any]:
    merged = dict(recorded)
    for key, value in recomputed.items():
        if isinstance(value, dict) and isinstance(recorded.get(key), dict):
            merged[key] = _merged(recorded[key], value)
        elif value not in (None, {}, [], 0, ""):
            merged[key] = value
    return merged


def job_ttl_seconds(spec_ttl: int | None, phase: str, settings: OperatorSettings) -> int:
    """How long the finished Job is kept after this outcome."""
    if spec_ttl is not None:
        return spec_ttl
    return settings.succeeded_job_ttl_seconds if phase == workload.SUCCEEDED else settings.failed_job_ttl_seconds


def job_ttl_change(
    spec_ttl: int | None, status: dict[str, Any], job: dict[str, Any] | None, settings: OperatorSettings
) -> int | None:
    """The ttlSecondsAfterFinished to set on the finished Job, or None: not finished in status yet, gone, or set."""
    phase = status.get("phase")
    if job is None or phase not in TERMINAL_PHASES:
        return None
    wanted = job_ttl_seconds(spec_ttl, phase, settings)
    return None if job["spec"].get("ttlSecondsAfterFinished") == wanted else wanted


def job_retained(
    job_name: str, job: dict[str, Any] | None, status: dict[str, Any], spec_ttl: int | None, settings: OperatorSettings
) -> ConditionUpdate:
    """Whether the finished Job and its pods (their logs) still exist, and until when they are kept."""
    phase = status["phase"]
    seconds = job_ttl_seconds(spec_ttl, phase, settings)
    until = _plus_seconds(status.get("completionTime"), seconds)
    if job is not None:
        kept = f" until {until}" if until else ""
        return ConditionUpdate(
            JOB_RETAINED,
            True,
            "Retained",
            f"the finished Job {job_name} and its pods are kept{kept} ({seconds} s after the run {phase.lower()}); "
            f"logs: kubectl logs job/{job_name}",
        )
    rerun = "; raise spec.retry to run it again" if phase == workload.FAILED else ""
    return ConditionUpdate(
        JOB_RETAINED,
        False,
        "JobDeleted",
        f"the finished Job {job_name} and its pods are gone (kept {seconds} s after the run {phase.lower()}, or "
        f"deleted by someone); this status is final and the run is not repeated{rerun}",
    )


def _plus_seconds(stamp: str | None, seconds: int) -> str | None:
    if not stamp:
        return None
    moment = dt.datetime.strptime(stamp, _TIME_FORMAT).replace(tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime(_TIME_FORMAT)
