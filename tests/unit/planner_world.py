"""Observed worlds for the planner's table tests (test_plan_*.py): resources as the API returns them, their Jobs and
pods as the watch cache keeps them, and a `run` that applies a plan the way controller/apply.py does, without a
cluster: every child it asks for is created as asked, unless the case says a child conflicts; an existing Job stays
as observed (Jobs are create-only) unless the plan replaces it, then it is gone."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from mmft_operator import naming
from mmft_operator.contracts.progress import WorkloadReport
from mmft_operator.reconcile import engine
from mmft_operator.reconcile.engine import ChildrenPlan, KindReconciler, Reference, StatusPlan, World
from mmft_operator.settings import OperatorSettings
from mmft_operator.status.workload import WorkloadEvent

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
UID = "uid-current"
JOB_UID = f"job-{UID}"  # the UID the API server gives the resource's Job (`job()`, and the one `run` creates)
SETTINGS = OperatorSettings()


def sample(kind_file: str, **spec_changes: Any) -> dict[str, Any]:
    """A sample resource as read from the API: namespace, uid, generation, no status yet."""
    body = yaml.safe_load((SAMPLES / kind_file).read_text())
    body["metadata"].update({"namespace": "ml", "uid": UID, "generation": 1, "resourceVersion": "10"})
    body["spec"].update(spec_changes)
    return body


def with_status(body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(body), "status": copy.deepcopy(status)}


def job(name: str, owner_uid: str = UID, conditions=(), suspend: bool = False, status=None, labels=None):  # noqa: ANN001, ANN201
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "uid": f"job-{owner_uid}", "resourceVersion": "20",
                     "creationTimestamp": "2026-12-01T11:00:00Z", "labels": labels or {},
                     "ownerReferences": [{"uid": owner_uid, "controller": True}]},
        "spec": {"suspend": suspend},
        "status": {"startTime": "2026-12-01T11:00:05Z", "conditions": list(conditions), **(status or {})},
    }


def job_condition(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T11:30:00Z"}


def pod(phase: str, terminated=None, waiting=None, conditions=(), container="trainer", job_uid=JOB_UID):  # noqa: ANN001, ANN201
    """A pod of the Job with UID `job_uid` (the Job controller's label), by default the Job `job()` and `run` make."""
    state = {key: value for key, value in (("terminated", terminated), ("waiting", waiting)) if value}
    return {"metadata": {"name": f"pod-{phase.lower()}", "creationTimestamp": "2026-12-01T11:00:06Z",
                         "labels": {naming.JOB_CONTROLLER_UID_LABEL: job_uid}},
            "status": {"phase": phase, "conditions": list(conditions),
                       "containerStatuses": [{"name": container, "state": state}]}}


def succeeded(body: dict[str, Any], outputs: dict[str, str], phase: str = "Succeeded", reason: str = "") -> dict:
    """A referenced resource in the given phase with its outputs."""
    return with_status(body, {"phase": phase, "reason": reason or phase, "outputs": outputs})


@dataclass
class Outcome:
    references: list[Reference]
    children: ChildrenPlan
    applied: engine.AppliedChildren
    suspend: bool | None
    status: StatusPlan

    @property
    def created(self) -> list[str]:
        return [f"{child['kind']}/{child['metadata']['name']}" for child in self.children.ensure]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status.status["conditions"] if c["type"] == type_)


def run(
    reconciler: KindReconciler,
    body: dict[str, Any],
    observed_job: dict[str, Any] | None = None,
    referenced: dict[Reference, dict[str, Any] | None] | None = None,
    pods: list[dict[str, Any]] | None = None,
    report: WorkloadReport | None = None,
    conflict: str | None = None,
    verify_children: bool = False,
    retrying: bool = False,
    now: dt.datetime = NOW,
    events: tuple[WorkloadEvent, ...] = (),
    service_account: dict[str, Any] | None = None,
    deployments: dict[str, dict[str, Any]] | None = None,
    settings: OperatorSettings = SETTINGS,
) -> Outcome:
    """Both planning steps, with the children applied as controller/apply.py applies them. `events`,
    `service_account` and `deployments` are what the controller observed besides the Job (controller/apply.py)."""
    parsed = engine.parse(reconciler, body)
    references = engine.references_needed(reconciler, parsed, body, observed_job)
    fetched = {ref: (referenced or {}).get(ref) for ref in references}
    world = World(body, observed_job, fetched, now, settings, verify_children, retrying, pods or [],
                  service_account=service_account, deployments=deployments or {})
    plan = engine.plan_children(reconciler, world, parsed)
    # A waiting Job the spec no longer matches is deleted (controller/apply.py, when its pods show none ran).
    applied_job = None if plan.replace_job is not None else plan.job
    if conflict is None and applied_job is None:
        # A Job is create-only (kube.ensure never patches one): only a missing Job becomes the desired one.
        for child in plan.ensure:
            if child["kind"] == "Job":
                applied_job = {**copy.deepcopy(child), "status": {}}
                applied_job["metadata"]["uid"] = JOB_UID
    suspend = engine.suspend_change(plan, applied_job)
    if suspend is not None:
        applied_job = {**applied_job, "spec": {**applied_job["spec"], "suspend": suspend}}
    applied = engine.applied_children(plan, applied_job, conflict)
    world = replace(world, events=events)  # read with the pods, after the children were applied
    status = engine.plan_status(reconciler, world, plan, applied, pods or [], report)
    return Outcome(references, plan, applied, suspend, status)


def converge(reconciler: KindReconciler, body: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], Outcome]:
    """The resource with the status its first reconcile writes (as the API returns it after the patch)."""
    outcome = run(reconciler, body, **kwargs)
    return with_status(body, outcome.status.status), outcome
