"""The planner every mmft kind shares: an observed world in, a plan out. Pure: no API client, no clock, no env.

The controller (`mmft_operator.controller`) fetches the world and applies plans, in two steps because creating the
children can change what status says (the Job just created, a ChildConflict):

    references_needed(body, job)        which referenced resources (DatasetPrep, FineTuneJob) to fetch first
    plan_children(world)                the children to ensure, the Job's suspend, or the SpecInvalid status
    children_to_observe(plan)           which kinds of existing children to list (only when children are ensured)
    plan_deletions(plan, existing)      the children this resource controls that left the desired set
    suspend_change(plan, job)           whether the Job's suspend must flip
    plan_status(world, plan, applied)   the status to write (only if it changed) and the transition Event

A kind contributes what differs (the references it reads, its prerequisites, its children, its results); this
module owns the order of things, the conditions, the events and the "write only what changed" rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from mmft_operator import naming
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import REPORT_KEY, WorkloadReport
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import identity, workload
from mmft_operator.status.conditions import ConditionUpdate, merge_conditions

from . import lifecycle, waiting_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """A resource of this API group that a kind's spec names in the owner's namespace (kind, name)."""

    kind: str
    name: str


# A fetched reference: its body, or None when it does not exist.
Referenced = Mapping[Reference, "dict[str, Any] | None"]


@dataclass(frozen=True)
class World:
    """What the controller observed for one resource, already fetched."""

    body: dict[str, Any]
    job: dict[str, Any] | None
    referenced: Referenced
    now: dt.datetime
    settings: OperatorSettings
    verify_children: bool = False  # the periodic resync: ensure children even when childrenHash matches
    retrying: bool = False  # the previous attempt failed: read before creating
    job_pods: list[dict[str, Any]] = field(default_factory=list)  # the Job's pods as observed before planning
    # Warning events about the Job and its pods that the objects themselves do not show (status/workload.py).
    events: tuple[workload.WorkloadEvent, ...] = ()
    # The spec's ServiceAccount as observed; None when it does not exist. Read only where the Workload Identity
    # check applies (OperatorSettings.checks_workload_identity).
    service_account: dict[str, Any] | None = None
    # The resource's own Deployments as observed, by name (the TensorBoard Deployment's availability).
    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ChildrenPlan:
    owner: Owner
    spec: Any
    job: dict[str, Any] | None  # the resource's own Job as observed (a stale Job of an earlier UID is dropped)
    invalid: ValidationError | None = None
    invalid_status: dict[str, Any] | None = None  # SpecInvalid: write this status, touch no child
    prerequisites: list[Prerequisite] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)  # Kind/name of every desired child, for status.children
    ensure: list[dict[str, Any]] = field(default_factory=list)  # children to create or bring to their spec hash
    expect_missing: bool = False  # create first, read only on a conflict (a resource seen for the first time)
    children_hash: str | None = None  # status.childrenHash as recorded
    hash_when_ensured: str | None = None  # status.childrenHash once `ensure` succeeded
    wanted_suspend: bool | None = None  # None: someone else (Kueue) owns the Job's suspend
    retired: bool = False  # the children kept after the run (a TensorBoard) are past their TTL: left out
    delete: list[ChildRef] = field(default_factory=list)  # children this resource controls that left the set
    stage: str = lifecycle.RUN  # lifecycle.RUN, FINAL (the outcome stands) or REPLACE (a retry deletes the old Job)
    attempt: int = 0  # the attempt (spec.retry) this pass works on
    replaced_job: dict[str, Any] | None = None  # REPLACE: the earlier attempt's Job, to delete before a new one
    replace_job: waiting_job.Replacement | None = None  # the waiting Job to delete; the new one comes once it is gone


@dataclass(frozen=True)
class AppliedChildren:
    """The outcome of applying a ChildrenPlan."""

    job: dict[str, Any] | None
    children_hash: str | None
    conflict: str | None = None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class StatusPlan:
    status: dict[str, Any]  # the status the resource has once the plan is applied
    patch: dict[str, Any] | None = None  # the merge patch of the status subresource; None: nothing changed
    event: Event | None = None
    # Reconcile again at this time: status changes by time alone (a retained child's TTL or a grace period runs out)
    # and nothing in the cluster changes then to trigger the pass that notices.
    requeue_at: dt.datetime | None = None


@dataclass(frozen=True)
class ChildRef:
    """A child to delete: it left the desired set (TensorBoard turned off, a multi-node job made single-node)."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class RetainedAfterRun:
    """Children that outlive the run only for a while (a FineTuneJob's TensorBoard): by their component label."""

    component: str
    ttl_seconds: int
    status_key: str  # the status field that shows when they go: {state: Retained|Removed, removeAt}


def applied_children(plan: ChildrenPlan, job: dict[str, Any] | None, conflict: str | None) -> AppliedChildren:
    """The children hash to record: the new one only when every child was ensured."""
    ensured = plan.ensure and conflict is None
    return AppliedChildren(job, plan.hash_when_ensured if ensured else plan.children_hash, conflict)


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
    """Hooks a kind implements; the planner functions below (plan_children, plan_status) drive them."""

    kind: str
    job_component: str
    # (apiVersion, kind) of the children that can leave the desired set while the resource exists: the controller
    # lists these by the owner's labels when children are ensured, and the planner deletes what is no longer wanted.
    # Kinds whose children are always wanted (the Job, ConfigMaps, Role, RoleBinding, PVC) are not listed.
    removable_kinds: tuple[tuple[str, str], ...] = ()
    # Shown with reason OutOfMemory when the workload's GPU ran out of memory: the spec fields to lower.
    out_of_memory_advice: str = workload.DEFAULT_OUT_OF_MEMORY_ADVICE

    def parse(self, spec: dict[str, Any]):  # noqa: ANN201 - the kind's spec model
        raise NotImplementedError

    def references(self, spec) -> list[Reference]:  # noqa: ANN001 - the kind's spec model
        """The resources the prerequisites read; the controller fetches them before planning."""
        return []

    def prerequisites(self, owner: Owner, spec, referenced: Referenced) -> list[Prerequisite]:  # noqa: ANN001
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

    def child_conditions(  # noqa: ANN001
        self, owner: Owner, spec, world: World, retired: bool
    ) -> dict[str, ConditionUpdate | None]:
        """Conditions about children other than the Job (by type); None removes a condition that no longer applies.
        `retired`: the children kept after the run are past their TTL and gone by design."""
        return {}

    def success_message(self, observed: Observed) -> str:
        return "finished"

    def job_name(self, owner: Owner) -> str:
        return naming.job(owner.name, self.job_component)

    # The status field of the children kept after the run (RetainedAfterRun.status_key), if the kind has any.
    retention_status_key: str | None = None

    def retained_after_run(self, spec, settings: OperatorSettings) -> RetainedAfterRun | None:  # noqa: ANN001
        """Children removed some time after the run finished; None: every child stays as long as the resource."""
        return None


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(kind=body["kind"], name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


@dataclass(frozen=True)
class Parsed:
    """A resource's body read once: its owner identity and spec model, or why the spec is invalid."""

    owner: Owner
    spec: Any
    invalid: ValidationError | None
    job_name: str | None  # None for an invalid spec: nothing to observe but the resource itself


def parse(reconciler: KindReconciler, body: dict[str, Any]) -> Parsed:
    owner = owner_of(body)
    try:
        spec = reconciler.parse(body["spec"])
    except ValidationError as error:
        return Parsed(owner, None, error, None)
    return Parsed(owner, spec, None, reconciler.job_name(owner))


def references_needed(reconciler: KindReconciler, parsed: Parsed, body: dict[str, Any],
                      job: dict[str, Any] | None) -> list[Reference]:
    """The resources the controller must fetch before planning: none for an invalid spec, and none once the Job
    exists and status records what was resolved (the inputs of a running job are fixed)."""
    if parsed.invalid is not None or _inputs_recorded(body, _own_job(body, job)):
        return []
    if lifecycle.stage(body.get("status") or {}, parsed.spec.retry, _own_job(body, job)) == lifecycle.FINAL:
        return []  # the outcome stands: nothing is resolved again
    return reconciler.references(parsed.spec)


def plan_children(reconciler: KindReconciler, world: World, parsed: Parsed | None = None) -> ChildrenPlan:
    """Step one: the children to ensure and the Job suspend to keep, or the SpecInvalid status to write."""
    body = world.body
    parsed = parsed or parse(reconciler, body)
    owner, spec = parsed.owner, parsed.spec
    status = body.get("status") or {}
    generation = body["metadata"].get("generation", 1)
    if parsed.invalid is not None:
        invalid = _spec_invalid_status(status, generation, world.now, parsed.invalid)
        return ChildrenPlan(owner=owner, spec=None, job=None, invalid=parsed.invalid, invalid_status=invalid)

    job = _own_job(body, world.job)
    if lifecycle.stage(status, spec.retry, job) != lifecycle.RUN:
        return _plan_finished_or_replaced(reconciler, world, owner, spec, status, job)
    # Once the Job exists its inputs are fixed: re-resolving them could change a running job's children. They are
    # resolved again only if the operator died between creating the Job and recording them.
    prerequisites = [] if _inputs_recorded(body, job) else reconciler.prerequisites(owner, spec, world.referenced)
    resolved: dict[str, str] = dict(status.get("resolved") or {})
    for prerequisite in prerequisites:
        resolved.update(prerequisite.resolved)

    plan = ChildrenPlan(owner=owner, spec=spec, job=job, prerequisites=prerequisites, resolved=resolved,
                        children_hash=status.get("childrenHash"), attempt=lifecycle.current_attempt(status, spec.retry))
    if not all(p.ready for p in prerequisites):
        return plan
    desired = _without_retired(reconciler, world, plan, reconciler.children(owner, spec, resolved, world.settings))
    plan.children = [f"{child['kind']}/{child['metadata']['name']}" for child in desired]
    plan.wanted_suspend = reconciler.desired_suspend(spec)
    wanted_hash = _combined_hash(desired)
    if world.verify_children or job is None or wanted_hash != plan.children_hash:
        plan.ensure = desired
        # Create-first only on a first attempt: after a failure most children exist already.
        plan.expect_missing = plan.children_hash is None and not world.retrying
        plan.hash_when_ensured = wanted_hash
    _plan_waiting_job_replacement(plan, desired, status, world.job_pods)
    return plan


def _plan_finished_or_replaced(
    reconciler: KindReconciler, world: World, owner: Owner, spec, status: dict[str, Any],  # noqa: ANN001
    job: dict[str, Any] | None,
) -> ChildrenPlan:
    """FINAL: the outcome stands; the other children still follow the spec but the Job is never created again.
    REPLACE: a retry; the earlier attempt's Job is deleted first, and nothing is created until it is gone."""
    attempt = lifecycle.current_attempt(status, spec.retry)
    step = lifecycle.stage(status, spec.retry, job)
    plan = ChildrenPlan(owner=owner, spec=spec, job=job, resolved=dict(status.get("resolved") or {}),
                        children_hash=status.get("childrenHash"), stage=step, attempt=attempt)
    if step == lifecycle.REPLACE:
        plan.job, plan.replaced_job, plan.children = None, job, list(status.get("children") or [])
        return plan
    # The children kept after the run (a TensorBoard) leave once their TTL has passed.
    desired = _without_retired(reconciler, world, plan, reconciler.children(owner, spec, plan.resolved, world.settings))
    plan.children = [f"{child['kind']}/{child['metadata']['name']}" for child in desired]
    wanted_hash = _combined_hash(desired)
    if world.verify_children or wanted_hash != plan.children_hash:
        plan.ensure = [child for child in desired if child["kind"] != "Job"]
        plan.hash_when_ensured = wanted_hash
    return plan


def job_ttl_change(
    plan: ChildrenPlan, status_plan: StatusPlan, job: dict[str, Any] | None, settings: OperatorSettings
) -> int | None:
    """The ttlSecondsAfterFinished to set on the finished Job, once status records its outcome (applied after the
    status write, so the Job is never collected before its verdict is kept)."""
    if plan.spec is None or plan.stage == lifecycle.REPLACE:
        return None
    return lifecycle.job_ttl_change(plan.spec.ttl_seconds_after_finished, status_plan.status, job, settings)


def _plan_waiting_job_replacement(
    plan: ChildrenPlan, desired: list[dict[str, Any]], status: dict[str, Any], pods: list[dict[str, Any]]
) -> None:
    """A waiting Job the spec no longer matches is deleted; its siblings are brought up to date now, the new Job is
    created by the pass that finds the old one gone."""
    desired_job = next((child for child in desired if child["kind"] == "Job"), None)
    plan.replace_job = waiting_job.replacement(plan.job, desired_job, status, pods)
    if plan.replace_job is not None:
        plan.ensure = [child for child in desired if child["kind"] != "Job"]
        plan.hash_when_ensured = _combined_hash(desired)


def suspend_change(plan: ChildrenPlan, job: dict[str, Any] | None) -> bool | None:
    """The suspend value to write to the (possibly just created) Job, or None when it already matches or someone
    else (Kueue) owns it."""
    if job is None or plan.wanted_suspend is None or bool(job["spec"].get("suspend")) == plan.wanted_suspend:
        return None
    return plan.wanted_suspend


def plan_status(
    reconciler: KindReconciler,
    world: World,
    plan: ChildrenPlan,
    applied: AppliedChildren,
    pods: list[dict[str, Any]],
    report: WorkloadReport | None,
) -> StatusPlan:
    """Step two: the status to write and the event to post, from the world after the children were applied."""
    body = world.body
    status = body.get("status") or {}
    if plan.invalid_status is not None:
        return _status_plan(body, plan.invalid_status, world.now)
    generation = body["metadata"].get("generation", 1)
    stalls_in = None
    if plan.stage == lifecycle.FINAL and applied.job is None:
        # The finished Job is gone: nothing to recompute the verdict from, and no reason to.
        new_status = lifecycle.final_status(status, None)
        new_status["observedGeneration"] = generation
    else:
        new_status, stalls_in = _compose_attempt(reconciler, world, plan, applied, pods, report)
        if plan.stage == lifecycle.FINAL:
            new_status = lifecycle.final_status(status, new_status)
    if applied.children_hash is not None:
        new_status["childrenHash"] = applied.children_hash
    # A new attempt's run starts again: the lock follows its own first pod, not the failed attempt's.
    recorded = status if status.get("attempt", 0) == plan.attempt else {}
    _record_run_start(new_status, recorded, lifecycle.pods_of(applied.job, pods))
    _add_job_retained(reconciler, world, plan, applied.job, new_status)
    _add_observed_conditions(reconciler, world, plan, new_status)
    retention_status, requeue_at = _after_run(reconciler, world, plan, new_status)
    if reconciler.retention_status_key:
        # Derived on every pass from the spec and the completion time: a final status never keeps an old one.
        new_status.pop(reconciler.retention_status_key, None)
    new_status.update(retention_status)
    if stalls_in is not None:
        stalls_at = world.now + dt.timedelta(seconds=stalls_in)
        requeue_at = stalls_at if requeue_at is None else min(requeue_at, stalls_at)
    return replace(_status_plan(body, new_status, world.now), requeue_at=requeue_at)


def children_to_observe(reconciler: KindReconciler, plan: ChildrenPlan) -> tuple[tuple[str, str], ...]:
    """The kinds of existing children to list before deleting: only when the children are ensured (their hash
    changed, which every change of the desired set does, or the resync verifies them), so a converged reconcile
    reads nothing more. Not on a first creation either (no children hash recorded yet: no earlier desired set left
    anything behind; a crash between creating and recording is caught by the resync): measured, two LISTs per
    FineTuneJob in a burst of new ones (docs/benchmarks.md)."""
    return reconciler.removable_kinds if plan.ensure and not plan.expect_missing else ()


def plan_deletions(plan: ChildrenPlan, existing: Mapping[tuple[str, str], list[dict[str, Any]]]) -> list[ChildRef]:
    """The listed children (by (apiVersion, kind)) that this resource controls and no longer wants. An object that
    merely carries its labels, without a controller reference to this resource's UID, is never deleted."""
    wanted = set(plan.children)
    deletions = []
    for (api_version, kind), objects in existing.items():
        for obj in objects:
            meta = obj["metadata"]
            controlled = any(ref.get("uid") == plan.owner.uid and ref.get("controller")
                             for ref in meta.get("ownerReferences") or [])
            if controlled and not meta.get("deletionTimestamp") and f"{kind}/{meta['name']}" not in wanted:
                deletions.append(ChildRef(api_version, kind, meta["name"]))
    return sorted(deletions, key=lambda ref: (ref.kind, ref.name))


def _retained_until(
    reconciler: KindReconciler, spec, status: dict[str, Any], settings: OperatorSettings  # noqa: ANN001
) -> tuple[RetainedAfterRun, dt.datetime] | None:
    """What stays after a finished run, and until when (completionTime + its TTL); None while the run goes on."""
    retained = reconciler.retained_after_run(spec, settings)
    finished = status.get("phase") in (workload.SUCCEEDED, workload.FAILED) and status.get("completionTime")
    if retained is None or not finished:
        return None
    completed = dt.datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return retained, completed + dt.timedelta(seconds=retained.ttl_seconds)


def _without_retired(
    reconciler: KindReconciler, world: World, plan: ChildrenPlan, desired: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The desired children less those kept after the run once their TTL ran out (by the recorded status)."""
    due = _retained_until(reconciler, plan.spec, world.body.get("status") or {}, world.settings)
    if due is None or world.now < due[1]:
        return desired
    plan.retired = True
    component = due[0].component
    return [child for child in desired if child["metadata"]["labels"].get(naming.COMPONENT_LABEL) != component]


def _after_run(
    reconciler: KindReconciler, world: World, plan: ChildrenPlan, new_status: dict[str, Any]
) -> tuple[dict[str, Any], dt.datetime | None]:
    """The status field showing when the children kept after the run go, and when to come back to remove them.

    Judged from the status being written: the pass that sees the run finish schedules the removal; a TTL already
    past (0, or the operator was down) asks for a pass at once."""
    if plan.spec is None:
        return {}, None
    due = _retained_until(reconciler, plan.spec, new_status, world.settings)
    if due is None:
        return {}, None
    retained, until = due
    stamp = until.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = "Removed" if plan.retired else "Retained"
    return {retained.status_key: {"state": state, "removeAt": stamp}}, None if plan.retired else until


def _compose_attempt(
    reconciler: KindReconciler,
    world: World,
    plan: ChildrenPlan,
    applied: AppliedChildren,
    pods: list[dict[str, Any]],
    report: WorkloadReport | None,
) -> tuple[dict[str, Any], float | None]:
    """The status of the current attempt, judged from its own Job and that Job's pods only, and the seconds until
    it turns Stalled by time alone (a grace period running out), if it will."""
    status = world.body.get("status") or {}
    job, replaced = applied.job, plan.replaced_job
    if job is not None and lifecycle.job_attempt(job) < plan.attempt:
        # The earlier attempt's Job, read back while creating the new one: the next pass replaces it.
        job, replaced = None, job
    pods = lifecycle.pods_of(job, pods)
    report = lifecycle.report_of(job, report)
    if replaced is not None:
        report = None  # the failed attempt's report, until the new Job's pod writes its own
        verdict = lifecycle.replacing_verdict(plan.attempt, replaced)
    else:
        verdict = workload.judge(
            job, pods, world.now, world.settings.unschedulable_grace_seconds, reconciler.out_of_memory_advice,
            world.events, world.settings.start_failure_grace_seconds,
        )
    if status.get("attempt", 0) != plan.attempt:
        # A new attempt: the failed attempt's times are not this one's (_compose keeps recorded times otherwise).
        status = {key: value for key, value in status.items() if key not in ("startTime", "completionTime")}
    new_status = _compose(
        reconciler, plan.owner, plan.spec, status, world.body["metadata"].get("generation", 1), world.now,
        plan.prerequisites, Observed(job, pods, report, verdict), plan.resolved, plan.children, applied.conflict,
    )
    if job is not None or replaced is not None or "attempt" in status:
        new_status["attempt"] = plan.attempt
    return new_status, verdict.stalls_in


def _add_job_retained(
    reconciler: KindReconciler, world: World, plan: ChildrenPlan, job: dict[str, Any] | None,
    new_status: dict[str, Any],
) -> None:
    """A finished run says whether its Job and pods (logs) still exist, and until when they are kept."""
    if new_status.get("phase") not in lifecycle.TERMINAL_PHASES:
        return
    update = lifecycle.job_retained(
        reconciler.job_name(plan.owner), job, new_status, plan.spec.ttl_seconds_after_finished, world.settings
    )
    new_status["conditions"] = merge_conditions(
        new_status.get("conditions") or [], [update], world.body["metadata"].get("generation", 1), world.now
    )


def _add_observed_conditions(reconciler: KindReconciler, world: World, plan: ChildrenPlan,
                             new_status: dict[str, Any]) -> None:
    """The conditions about what the resource uses besides its Job (its ServiceAccount, its other children),
    after the others; a condition that no longer applies is removed."""
    updates = {
        **identity.workload_identity_conditions(
            plan.spec.service_account_name, world.service_account, world.settings.checks_workload_identity
        ),
        **reconciler.child_conditions(plan.owner, plan.spec, world, plan.retired),
    }
    conditions = new_status["conditions"]
    owned = [condition for condition in conditions if condition["type"] in updates]
    merged = merge_conditions(owned, [update for update in updates.values() if update is not None],
                              world.body["metadata"].get("generation", 1), world.now)
    new_status["conditions"] = [c for c in conditions if c["type"] not in updates] + [
        c for c in merged if updates.get(c["type"]) is not None
    ]


def _record_run_start(new_status: dict[str, Any], status: dict[str, Any], pods: list[dict[str, Any]]) -> None:
    """status.runStartedTime: when a pod of the Job first ran (the run-shaping fields lock then); kept once set."""
    started = status.get("runStartedTime") or waiting_job.first_run_time(pods)
    if started:
        new_status["runStartedTime"] = started


def _own_job(body: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any] | None:
    uid = body["metadata"]["uid"]
    if job is not None and not any(ref.get("uid") == uid for ref in job["metadata"].get("ownerReferences", [])):
        return None  # a stale Job of an earlier object with this name: never adopt it
    return job


def _inputs_recorded(body: dict[str, Any], job: dict[str, Any] | None) -> bool:
    return job is not None and bool((body.get("status") or {}).get("resolved"))


def _combined_hash(children: list[dict[str, Any]]) -> str:
    stamps = [child["metadata"].get("annotations", {}).get(naming.SPEC_HASH_ANNOTATION, "") for child in children]
    return hashlib.sha256("".join(stamps).encode()).hexdigest()[:16]


def read_report(owner: Owner, config_map: dict[str, Any] | None) -> WorkloadReport | None:
    """The workload's report from its ConfigMap; an unreadable one is logged and ignored, never fails a reconcile."""
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
    config_invalid = ConditionUpdate("ConfigValid", False, "SpecInvalid", message)
    if status.get("phase") in lifecycle.TERMINAL_PHASES:
        # The outcome stands (terminal is terminal): a spec that became invalid after the run (edited past the
        # API server's checks, or read by a stricter operator version) only stops the children that follow it.
        return {
            **status,
            "observedGeneration": generation,
            "conditions": merge_conditions(status.get("conditions") or [], [config_invalid], generation, now),
        }
    updates = [
        config_invalid,
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


def _status_plan(body: dict[str, Any], new_status: dict[str, Any], now: dt.datetime) -> StatusPlan:
    """Write only what changed (a converged resource costs no write), and an Event per phase/reason transition or
    when the resource turns Stalled (a grace period running out keeps the reason but deserves a Warning)."""
    old_status = body.get("status") or {}
    if _normalised(old_status) == _normalised(new_status):
        return StatusPlan(new_status)
    patch = dict(new_status)
    for key in old_status:
        if key not in new_status:
            patch[key] = None  # merge patch removes what no longer applies
    event = None
    transition = any(old_status.get(key) != new_status.get(key) for key in ("phase", "reason"))
    if transition or (_stalled(new_status) and not _stalled(old_status)):
        event = _transition_event(new_status)
    return StatusPlan(new_status, patch, event)


def _stalled(status: dict[str, Any]) -> bool:
    return any(c["type"] == "Stalled" and c["status"] == "True" for c in status.get("conditions") or [])


def _transition_event(status: dict[str, Any]) -> Event:
    conditions = {condition["type"]: condition for condition in status.get("conditions", [])}
    warning = status.get("phase") == workload.FAILED or conditions.get("Stalled", {}).get("status") == "True"
    message = conditions.get("Reconciling", {}).get("message") or conditions.get("Ready", {}).get("message", "")
    if warning:
        message = conditions.get("Stalled", {}).get("message") or conditions.get("Failed", {}).get("message", "")
    return Event(
        "Warning" if warning else "Normal",
        status.get("reason", ""),
        f"{status.get('phase')}: {message}" if message else status.get("phase", ""),
    )


def _normalised(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value not in (None, {}, [])}
