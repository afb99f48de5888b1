"""One reconcile pass: observe, plan (the pure `reconcile.engine`), apply the plan through `Kube`.

Writes are optimistic: a status patch carries the resourceVersion it was planned from, so a concurrent change
costs a 409 and a fresh pass from a fresh read, never a lost update.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mmft_operator.kube import ApiError, ChildConflict, Kube, NamespaceTerminating, Ref
from mmft_operator.reconcile import engine, waiting_job
from mmft_operator.reconcile.engine import ChildrenPlan, KindReconciler, StatusPlan, World
from mmft_operator.settings import OperatorSettings

from .observe import Observer

log = logging.getLogger(__name__)

STATUS_CONFLICT_RETRIES = 3


def reconcile(
    observer: Observer,
    reconciler: KindReconciler,
    settings: OperatorSettings,
    clock: Callable[[], dt.datetime],
    namespace: str,
    name: str,
    verify_children: bool = False,
    retrying: bool = False,
) -> StatusPlan | None:
    """Bring one resource's children and status up to date; returns the status plan applied (the status, and when
    to reconcile again), or None once the resource is gone.

    Children whose combined hash matches `status.childrenHash` are not read again unless `verify_children` (the
    periodic resync) asks for it: an event-driven reconcile with nothing to change reads only the watch cache and
    writes nothing.
    """
    for attempt in range(STATUS_CONFLICT_RETRIES):
        body = observer.owner(reconciler.kind, namespace, name, fresh=attempt > 0)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # owner references cascade the deletion; nothing outside the cluster to clean
        try:
            return _reconcile_once(observer, reconciler, settings, clock(), body, verify_children, retrying)
        except NamespaceTerminating:
            return None
        except ApiError as error:
            if error.status != 409:
                raise
            log.info("%s/%s changed while reconciling; retrying with a fresh read", namespace, name)
    raise RuntimeError(f"{namespace}/{name}: status kept conflicting after {STATUS_CONFLICT_RETRIES} attempts")


def _reconcile_once(
    observer: Observer,
    reconciler: KindReconciler,
    settings: OperatorSettings,
    now: dt.datetime,
    body: dict[str, Any],
    verify_children: bool,
    retrying: bool,
) -> StatusPlan:
    meta = body["metadata"]
    parsed = engine.parse(reconciler, body)
    job, references, job_pods = None, [], []
    if parsed.job_name is not None:
        recorded = bool((body.get("status") or {}).get("childrenHash"))
        job = observer.job(meta["namespace"], parsed.job_name, children_recorded=recorded)
        references = engine.references_needed(reconciler, parsed, body, job)
        job_pods = observer.pods(meta["namespace"], parsed.job_name) if job is not None else []
    world = World(body, job, observer.referenced(meta["namespace"], references), now, settings, verify_children,
                  retrying, job_pods)
    if parsed.spec is not None:
        world = _with_uses(observer, world, parsed)
    plan = engine.plan_children(reconciler, world, parsed)
    if plan.replace_job is not None:
        _replace_waiting_job(observer.kube, body, plan, now)
    existing = observer.children(plan.owner, engine.children_to_observe(reconciler, plan))
    plan.delete = engine.plan_deletions(plan, existing)
    _delete_replaced_job(observer.kube, plan)
    applied = _apply_children(observer.kube, plan)
    _delete_children(observer.kube, plan)
    if plan.invalid_status is not None:
        status_plan = engine.plan_status(reconciler, world, plan, applied, [], None)
    else:
        pods = observer.pods(meta["namespace"], applied.job["metadata"]["name"]) if applied.job is not None else []
        world = replace(world, events=tuple(observer.events(meta["namespace"], applied.job, pods)))
        status_plan = engine.plan_status(reconciler, world, plan, applied, pods, observer.report(plan.owner))
    _apply_status(observer, body, status_plan, now)
    ttl = engine.job_ttl_change(plan, status_plan, applied.job, settings)
    if ttl is not None:
        try:
            observer.cache.wrote(observer.kube.set_job_ttl(applied.job, ttl))
        except ApiError as error:
            if error.status != 404:  # gone already: there is nothing left to keep
                raise
    return status_plan


def _with_uses(observer: Observer, world: World, parsed: engine.Parsed) -> World:
    """The world plus what the resource uses besides its Job: its ServiceAccount (where the Workload Identity check
    applies) and its Deployments."""
    namespace = parsed.owner.namespace
    service_account = None
    if world.settings.checks_workload_identity:
        service_account = observer.service_account(namespace, parsed.spec.service_account_name)
    deployments = {name: deployment for name in observer.deployment_names(parsed.owner)
                   if (deployment := observer.deployment(parsed.owner, name)) is not None}
    return replace(world, service_account=service_account, deployments=deployments)


def _apply_children(kube: Kube, plan: ChildrenPlan) -> engine.AppliedChildren:
    job, conflict = plan.job, None
    try:
        for child in plan.ensure:
            applied, _ = kube.ensure(child, plan.owner.uid, expect_missing=plan.expect_missing)
            if child["kind"] == "Job":
                job = applied
    except ChildConflict as error:
        conflict = str(error)
    suspend = engine.suspend_change(plan, job)
    if suspend is not None:
        job = kube.set_job_suspend(job, suspend)
    return engine.applied_children(plan, job, conflict)


def _delete_children(kube: Kube, plan: ChildrenPlan) -> None:
    """Delete what left the desired set; `delete_owned` re-checks the controller reference before each delete."""
    for child in plan.delete:
        if kube.delete_owned(Ref(child.api_version, child.kind, plan.owner.namespace, child.name), plan.owner.uid):
            log.info("%s/%s: deleted %s %s, no longer wanted", plan.owner.namespace, plan.owner.name, child.kind,
                     child.name)


def _delete_replaced_job(kube: Kube, plan: ChildrenPlan) -> None:
    """A retry deletes the failed attempt's Job first; a later pass, seeing it gone, creates the new one."""
    if plan.replaced_job is None:
        return
    meta = plan.replaced_job["metadata"]
    if kube.delete_owned(Ref("batch/v1", "Job", meta["namespace"], meta["name"]), plan.owner.uid):
        log.info("%s/%s: deleted Job %s of an earlier attempt for attempt %d", plan.owner.namespace, plan.owner.name,
                 meta["name"], plan.attempt)


def _replace_waiting_job(kube: Kube, body: dict[str, Any], plan: ChildrenPlan, now: dt.datetime) -> None:
    """Delete the waiting Job the spec no longer matches, unless its pods, read fresh from the API, show that one
    started meanwhile (the watch may lag behind a pod that just began to run)."""
    old = plan.replace_job.job
    meta = old["metadata"]
    ref = Ref("batch/v1", "Job", meta["namespace"], meta["name"])
    fresh_pods = kube.list("v1", "Pod", meta["namespace"], {"batch.kubernetes.io/job-name": meta["name"]})
    if waiting_job.has_run(old, fresh_pods):
        log.info("%s/%s: not replacing Job %s: one of its pods started running", meta["namespace"],
                 plan.owner.name, meta["name"])
        return
    change = waiting_job.describe_change(kube.get(ref), plan.replace_job.desired)
    if kube.delete_owned(ref, plan.owner.uid):
        kube.post_event(
            body, "Normal", waiting_job.REPLACED_REASON,
            f"deleted the waiting Job {meta['name']}, none of whose pods ever ran, because the spec changed "
            f"({change}); the new Job is created once it is gone",
            now,
        )
    plan.job = None


def _apply_status(observer: Observer, body: dict[str, Any], plan: StatusPlan, now: dt.datetime) -> None:
    if plan.patch is None:
        return
    observer.cache.wrote(observer.kube.patch_status(body, plan.patch))
    if plan.event is not None:
        observer.kube.post_event(body, plan.event.type, plan.event.reason, plan.event.message, now)
