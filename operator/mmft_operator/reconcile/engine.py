"""The reconcile loop every mmft kind shares: observe -> plan -> apply -> patch status.

A kind contributes what differs (its prerequisites, its children, its results); this module owns the order of
things, the conditions, the events and the "write only what changed" rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mmft_operator import naming
from mmft_operator.api.common import API_VERSION
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import REPORT_KEY, WorkloadReport
from mmft_operator.kube import ApiError, ChildConflict, Kube, NamespaceTerminating, Ref
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload
from mmft_operator.status.conditions import ConditionUpdate, merge_conditions
from mmft_operator.watch_cache import WatchCache

log = logging.getLogger(__name__)

STATUS_CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Context:
    kube: Kube
    settings: OperatorSettings
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    cache: WatchCache = field(default_factory=WatchCache)

    def owner(self, kind: str, namespace: str, name: str, fresh: bool) -> dict[str, Any] | None:
        """From the watch unless `fresh` (a write based on it conflicted) or the watch has not got it."""
        cached = None if fresh or not self.cache.ready else self.cache.owner(kind, namespace, name)
        return cached if cached is not None else self.kube.get(Ref(API_VERSION, kind, namespace, name))

    def job(self, namespace: str, name: str, children_recorded: bool) -> dict[str, Any] | None:
        if not self.cache.ready:
            return self.kube.get(Ref("batch/v1", "Job", namespace, name))
        job = self.cache.job(namespace, name)
        if job is None and children_recorded:
            # The status says the children exist: the Job's creation may just not have reached the watch yet.
            job = self.kube.get(Ref("batch/v1", "Job", namespace, name))
        return job

    def pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        if not self.cache.ready:
            return self.kube.list("v1", "Pod", namespace, {"batch.kubernetes.io/job-name": job_name})
        return self.cache.pods(namespace, job_name)

    def report(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.cache.ready:
            return self.kube.get(Ref("v1", "ConfigMap", namespace, name))
        return self.cache.report(namespace, name)


@dataclass(frozen=True)
class Prerequisite:
    """Something the resource waits for before its Job may exist (a dataset, the models to compare)."""

    condition_type: str
    ready: bool
    reason: str
    message: str
    stalled: bool = False
    resolved: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Observed:
    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    report: WorkloadReport | None
    verdict: workload.WorkloadVerdict


class KindReconciler:
    """Hooks a kind implements; `reconcile` drives them."""

    kind: str
    job_component: str
    # Shown with reason OutOfMemory when the workload's GPU ran out of memory: the spec fields to lower.
    out_of_memory_advice: str = workload.DEFAULT_OUT_OF_MEMORY_ADVICE

    def parse(self, spec: dict[str, Any]):  # noqa: ANN201 - the kind's spec model
        raise NotImplementedError

    def prerequisites(self, ctx: Context, owner: Owner, spec, status: dict[str, Any]) -> list[Prerequisite]:
        return []

    def children(self, owner: Owner, spec, resolved: dict[str, str], settings: OperatorSettings) -> list[dict]:
        raise NotImplementedError

    def desired_suspend(self, spec) -> bool | None:
        """The Job's suspend to keep in sync, or None when someone else (Kueue) owns it."""
        return None

    def extra_conditions(self, observed: Observed) -> list[ConditionUpdate]:
        return []

    def extra_status(self, owner: Owner, spec, observed: Observed) -> dict[str, Any]:
        return {}

    def success_message(self, observed: Observed) -> str:
        return "finished"

    def job_name(self, owner: Owner) -> str:
        return naming.job(owner.name, self.job_component)


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(kind=body["kind"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def reconcile(
    ctx: Context,
    reconciler: KindReconciler,
    namespace: str,
    name: str,
    verify_children: bool = False,
    retrying: bool = False,
) -> dict[str, Any] | None:
    """Bring one resource's children and status up to date; returns its status, or None once it is gone.

    Children whose combined hash matches `status.childrenHash` are not read again unless `verify_children` (the
    periodic resync) asks for it: an event-driven reconcile with nothing to change reads only the watch cache and
    writes nothing.
    """
    for attempt in range(STATUS_CONFLICT_RETRIES):
        body = ctx.owner(reconciler.kind, namespace, name, fresh=attempt > 0)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # owner references cascade the deletion; nothing outside the cluster to clean
        try:
            return _reconcile_once(ctx, reconciler, body, verify_children, retrying)
        except NamespaceTerminating:
            return None
        except ApiError as error:
            if error.status != 409:
                raise
            log.info("%s/%s changed while reconciling; retrying with a fresh read", namespace, name)
    raise RuntimeError(f"{namespace}/{name}: status kept conflicting after {STATUS_CONFLICT_RETRIES} attempts")


def _reconcile_once(
    ctx: Context, reconciler: KindReconciler, body: dict[str, Any], verify_children: bool, retrying: bool
) -> dict[str, Any]:
    owner = owner_of(body)
    now = ctx.clock()
    status = body.get("status") or {}
    generation = body["metadata"].get("generation", 1)
    try:
        spec = reconciler.parse(body["spec"])
    except ValidationError as error:
        invalid = _spec_invalid_status(status, generation, now, error)
        _write_status(ctx, body, invalid, now)
        return invalid

    job = ctx.job(owner.namespace, reconciler.job_name(owner), children_recorded=bool(status.get("childrenHash")))
    if job is not None and not any(ref.get("uid") == owner.uid for ref in job["metadata"].get("ownerReferences", [])):
        job = None  # a stale Job of an earlier object with this name: never adopt it
    # Once the Job exists its inputs are fixed: re-resolving them could change a running job's children. They are
    # resolved again only if the operator died between creating the Job and recording them.
    recorded = job is not None and bool(status.get("resolved"))
    prerequisites = [] if recorded else reconciler.prerequisites(ctx, owner, spec, status)
    resolved: dict[str, str] = dict(status.get("resolved") or {})
    for prerequisite in prerequisites:
        resolved.update(prerequisite.resolved)

    conflict = None
    children: list[str] = []
    children_hash = status.get("childrenHash")
    if all(p.ready for p in prerequisites):
        desired = reconciler.children(owner, spec, resolved, ctx.settings)
        children = [f"{child['kind']}/{child['metadata']['name']}" for child in desired]
        wanted_hash = _combined_hash(desired)
        if verify_children or job is None or wanted_hash != children_hash:
            try:
                for child in desired:
                    # Create-first only on a first attempt: after a failure most children exist already.
                    fresh = children_hash is None and not retrying
                    applied, _ = ctx.kube.ensure(child, owner.uid, expect_missing=fresh)
                    if child["kind"] == "Job":
                        job = applied
                children_hash = wanted_hash
            except ChildConflict as error:
                conflict = str(error)
        wanted_suspend = reconciler.desired_suspend(spec)
        if job is not None and wanted_suspend is not None and bool(job["spec"].get("suspend")) != wanted_suspend:
            job = ctx.kube.set_job_suspend(job, wanted_suspend)

    pods = []
    if job is not None:
        pods = ctx.pods(owner.namespace, job["metadata"]["name"])
    observed = Observed(
        job,
        pods,
        _read_report(ctx, owner),
        workload.judge(
            job, pods, now, ctx.settings.unschedulable_grace_seconds, reconciler.out_of_memory_advice
        ),
    )
    new_status = _compose(
        reconciler, owner, spec, status, generation, now, prerequisites, observed, resolved, children, conflict
    )
    if children_hash is not None:
        new_status["childrenHash"] = children_hash
    _write_status(ctx, body, new_status, now)
    return new_status


def _combined_hash(children: list[dict[str, Any]]) -> str:
    stamps = [child["metadata"].get("annotations", {}).get(naming.SPEC_HASH_ANNOTATION, "") for child in children]
    return hashlib.sha256("".join(stamps).encode()).hexdigest()[:16]


def _read_report(ctx: Context, owner: Owner) -> WorkloadReport | None:
    config_map = ctx.report(owner.namespace, naming.report_config_map(owner.kind, owner.name))
    text = ((config_map or {}).get("data") or {}).get(REPORT_KEY)
    if not text:
        return None
    try:
        return WorkloadReport.from_json(text)
    except ValidationError as error:
        log.warning(
            "%s/%s: ignoring an unreadable workload report: %s", owner.namespace, owner.name, error.errors()[0]["msg"]
        )
        return None


def _compose(
    reconciler: KindReconciler,
    owner: Owner,
    spec,
    status: dict[str, Any],
    generation: int,
    now: dt.datetime,
    prerequisites: list[Prerequisite],
    observed: Observed,
    resolved: dict[str, str],
    children: list[str],
    conflict: str | None,
) -> dict[str, Any]:
    verdict = observed.verdict
    waiting = next((p for p in prerequisites if not p.ready), None)
    if conflict:
        phase, reason, message, stalled = workload.PENDING, "ChildConflict", conflict, True
    elif waiting is not None:
        phase, reason, message, stalled = workload.PENDING, waiting.reason, waiting.message, waiting.stalled
    else:
        phase, reason, message, stalled = verdict.phase, verdict.reason, verdict.message, verdict.stalled
    succeeded = phase == workload.SUCCEEDED
    failed = phase == workload.FAILED
    if succeeded:
        message = reconciler.success_message(observed)

    updates = (
        [ConditionUpdate(p.condition_type, p.ready, p.reason, p.message) for p in prerequisites]
        + reconciler.extra_conditions(observed)
        + [
            ConditionUpdate("Running", phase == workload.RUNNING, reason, message),
            ConditionUpdate("Succeeded", succeeded, "Succeeded" if succeeded else reason, message),
            ConditionUpdate("Failed", failed, reason if failed else "NoFailure", message if failed else ""),
            ConditionUpdate(
                "Ready",
                succeeded,
                "Succeeded" if succeeded else reason,
                message if succeeded else "the result is not ready yet",
            ),
            ConditionUpdate("Reconciling", not (succeeded or failed) and not stalled, reason, message),
            ConditionUpdate("Stalled", stalled, reason if stalled else "NotStalled", message if stalled else ""),
        ]
    )
    new_status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "reason": reason,
        "conditions": merge_conditions(status.get("conditions") or [], updates, generation, now),
        "children": children or None,
        "resolved": resolved or None,
        "startTime": verdict.start_time if observed.job is not None else None,
        "completionTime": verdict.completion_time if verdict.terminal else None,
    }
    new_status.update(reconciler.extra_status(owner, spec, observed))
    # Terminal states are final: once Succeeded or Failed the recorded times never move again.
    for key in ("startTime", "completionTime"):
        if status.get(key) and new_status.get(key):
            new_status[key] = status[key]
    return {key: value for key, value in new_status.items() if value is not None}


def _spec_invalid_status(status: dict[str, Any], generation: int, now: dt.datetime, error: ValidationError):
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = f"spec.{where}: {first['msg']}"
    updates = [
        ConditionUpdate("ConfigValid", False, "SpecInvalid", message),
        ConditionUpdate("Stalled", True, "SpecInvalid", message),
        ConditionUpdate("Reconciling", False, "SpecInvalid", message),
        ConditionUpdate("Ready", False, "SpecInvalid", message),
    ]
    return {
        **status,
        "observedGeneration": generation,
        "phase": workload.PENDING,
        "reason": "SpecInvalid",
        "conditions": merge_conditions(status.get("conditions") or [], updates, generation, now),
    }


def _write_status(ctx: Context, body: dict[str, Any], new_status: dict[str, Any], now: dt.datetime) -> None:
    old_status = body.get("status") or {}
    if _normalised(old_status) == _normalised(new_status):
        return
    patch = dict(new_status)
    for key in old_status:
        if key not in new_status:
            patch[key] = None  # merge patch removes what no longer applies
    ctx.cache.wrote(ctx.kube.patch_status(body, patch))
    if (old_status.get("phase"), old_status.get("reason")) != (new_status.get("phase"), new_status.get("reason")):
        _post_transition_event(ctx, body, new_status, now)


def _post_transition_event(ctx: Context, body: dict[str, Any], status: dict[str, Any], now: dt.datetime) -> None:
    conditions = {condition["type"]: condition for condition in status.get("conditions", [])}
    warning = status.get("phase") == workload.FAILED or conditions.get("Stalled", {}).get("status") == "True"
    message = conditions.get("Reconciling", {}).get("message") or conditions.get("Ready", {}).get("message", "")
    if warning:
        message = conditions.get("Stalled", {}).get("message") or conditions.get("Failed", {}).get("message", "")
    ctx.kube.post_event(
        body,
        "Warning" if warning else "Normal",
        status.get("reason", ""),
        f"{status.get('phase')}: {message}" if message else status.get("phase", ""),
        now,
    )


def _normalised(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value not in (None, {}, [])}
