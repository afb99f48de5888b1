"""The planner's children lifecycle: what leaves the desired set is deleted (only what this resource controls), and
a finished FineTuneJob's TensorBoard goes after its TTL, with a requeue at that time and status saying when.

The integration side (a real API server, the operator's own RBAC) is tests/integration/test_lifecycle_children.py.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from mmft_operator.reconcile import engine
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.engine import ChildRef, Reference
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from planner_world import NOW, SETTINGS, UID, converge, job_condition, run, sample, succeeded, with_status

FTJ = FineTuneJobReconciler()
NAME = "gemma3-melanoma"
READY = {Reference("DatasetPrep", "isic2020"): succeeded(sample("datasetprep.yaml"),
                                                         {"trainJsonl": "/mnt/gcs/prepared/isic2020/train.jsonl"})}
TENSORBOARD = {f"Deployment/{NAME}-tensorboard", f"Service/{NAME}-tensorboard"}
COMPLETED_AT = "2026-12-01T11:40:00Z"
COMPLETED = dt.datetime(2026, 12, 1, 11, 40, tzinfo=dt.UTC)
DAY = 24 * 3600


def started(**spec_changes) -> tuple[dict, dict]:
    """A FineTuneJob whose children exist and whose status records them (two passes, as in test_plan_finetunejob)."""
    body, outcome = converge(FTJ, sample("finetunejob.yaml", **spec_changes), referenced=READY)
    body, _ = converge(FTJ, body, observed_job=outcome.applied.job)
    return body, outcome.applied.job


def finished(ttl: int | None = None, phase: str = "Complete") -> tuple[dict, dict, engine.StatusPlan]:
    """A FineTuneJob whose Job finished at COMPLETED_AT, with the status the pass that saw it wrote."""
    tensorboard = {"enabled": True} if ttl is None else {"enabled": True, "ttlSecondsAfterFinished": ttl}
    body, applied_job = started(tensorboard=tensorboard)
    done = {**applied_job, "status": {"startTime": "2026-12-01T11:00:05Z", "completionTime": COMPLETED_AT,
                                      "conditions": [job_condition(phase, "BackoffLimitExceeded")]}}
    seen = run(FTJ, body, observed_job=done, now=COMPLETED + dt.timedelta(seconds=1))
    return with_status(body, seen.status.status), done, seen.status


def existing(desired: list[dict], owner_uid: str = UID, controller: bool = True) -> dict[tuple[str, str], list]:
    """Listed Services and Deployments as the API returns them (no kind/apiVersion on list items)."""
    listed: dict[tuple[str, str], list] = {("v1", "Service"): [], ("apps/v1", "Deployment"): []}
    for child in desired:
        key = (child["apiVersion"], child["kind"])
        if key in listed:
            obj = copy.deepcopy({k: v for k, v in child.items() if k not in ("apiVersion", "kind")})
            obj["metadata"]["ownerReferences"] = [{"uid": owner_uid, "controller": controller}]
            listed[key].append(obj)
    return listed


def deletions(outcome, listed) -> list[ChildRef]:  # noqa: ANN001
    """The controller's step: list what the planner asks for, then plan the deletions."""
    kinds = engine.children_to_observe(FTJ, outcome.children)
    return engine.plan_deletions(outcome.children, {key: items for key, items in listed.items() if key in kinds})


def all_children(**spec_changes) -> list[dict]:
    return run(FTJ, sample("finetunejob.yaml", **spec_changes), referenced=READY).children.ensure


# -- item 2: children follow the spec -------------------------------------------------------------------------


def test_turning_tensorboard_off_deletes_its_deployment_and_service_and_nothing_else() -> None:
    body, applied_job = started()
    off = with_status(sample("finetunejob.yaml", tensorboard={"enabled": False}), body["status"])
    outcome = run(FTJ, off, observed_job=applied_job)
    assert outcome.children.ensure, "a change of the desired set changes the children hash"
    assert not TENSORBOARD & set(outcome.status.status["children"])
    assert deletions(outcome, existing(all_children())) == [
        ChildRef("apps/v1", "Deployment", f"{NAME}-tensorboard"), ChildRef("v1", "Service", f"{NAME}-tensorboard")]


def test_a_multi_node_job_made_single_node_deletes_its_rendezvous_service() -> None:
    two_nodes = {"accelerator": "nvidia-tesla-a100", "gpusPerNode": 1, "nodes": 2}
    body, applied_job = started(compute=two_nodes)
    assert f"Service/{NAME}-rdzv" in body["status"]["children"]
    one_node = with_status(sample("finetunejob.yaml"), body["status"])
    outcome = run(FTJ, one_node, observed_job=applied_job)
    assert deletions(outcome, existing(all_children(compute=two_nodes))) == [ChildRef("v1", "Service", f"{NAME}-rdzv")]


@pytest.mark.parametrize(("owner_uid", "controller"), [("uid-someone-else", True), (UID, False)],
                         ids=["another-owner", "owner-but-not-controller"])
def test_an_object_with_the_owners_labels_it_does_not_control_is_never_deleted(owner_uid, controller) -> None:
    body, applied_job = started()
    off = with_status(sample("finetunejob.yaml", tensorboard={"enabled": False}), body["status"])
    outcome = run(FTJ, off, observed_job=applied_job)
    assert deletions(outcome, existing(all_children(), owner_uid, controller)) == []


def test_a_converged_resource_lists_no_children() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job)
    assert engine.children_to_observe(FTJ, outcome.children) == ()


def test_a_first_creation_lists_no_children() -> None:
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced=READY)
    assert outcome.children.ensure and outcome.children.expect_missing
    assert engine.children_to_observe(FTJ, outcome.children) == ()


def test_the_resync_lists_the_removable_kinds_and_deletes_nothing_still_wanted() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job, verify_children=True)
    assert set(engine.children_to_observe(FTJ, outcome.children)) == {("v1", "Service"), ("apps/v1", "Deployment")}
    assert deletions(outcome, existing(all_children())) == []


def test_a_child_already_being_deleted_is_not_deleted_again() -> None:
    body, applied_job = started()
    off = with_status(sample("finetunejob.yaml", tensorboard={"enabled": False}), body["status"])
    outcome = run(FTJ, off, observed_job=applied_job)
    listed = existing(all_children())
    for item in listed[("apps/v1", "Deployment")]:
        item["metadata"]["deletionTimestamp"] = "2026-12-01T11:59:00Z"
    assert deletions(outcome, listed) == [ChildRef("v1", "Service", f"{NAME}-tensorboard")]


@pytest.mark.parametrize("reconciler", [DatasetPrepReconciler(), EvaluationReconciler()], ids=["prep", "eval"])
def test_kinds_whose_children_never_leave_list_nothing(reconciler) -> None:  # noqa: ANN001
    assert reconciler.removable_kinds == ()
    plan = engine.ChildrenPlan(owner=None, spec=None, job=None, ensure=[{"kind": "Job"}])
    assert engine.children_to_observe(reconciler, plan) == ()


# -- item 3: TensorBoard after the run ------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["Complete", "Failed"])
def test_the_pass_that_sees_the_run_finish_schedules_the_removal_and_shows_it(phase) -> None:
    _, _, status_plan = finished(ttl=600, phase=phase)
    completed = dt.datetime.fromisoformat(status_plan.status["completionTime"])
    remove_at = completed + dt.timedelta(seconds=600)
    assert status_plan.status["phase"] == ("Succeeded" if phase == "Complete" else "Failed")
    assert status_plan.status["tensorboard"] == {"state": "Retained", "removeAt": f"{remove_at:%Y-%m-%dT%H:%M:%SZ}"}
    assert status_plan.requeue_at == remove_at


def test_within_its_ttl_the_tensorboard_stays_and_nothing_is_written_again() -> None:
    body, done, _ = finished(ttl=600)
    outcome = run(FTJ, body, observed_job=done, now=COMPLETED + dt.timedelta(seconds=599))
    assert TENSORBOARD <= set(outcome.status.status["children"])
    assert outcome.children.ensure == [] and outcome.status.patch is None
    assert outcome.status.requeue_at == COMPLETED + dt.timedelta(seconds=600)


def test_once_its_ttl_ran_out_the_tensorboard_leaves_the_set_is_deleted_and_status_says_removed() -> None:
    body, done, _ = finished(ttl=600)
    outcome = run(FTJ, body, observed_job=done, now=COMPLETED + dt.timedelta(seconds=600))
    assert outcome.children.retired and outcome.children.ensure
    assert not TENSORBOARD & set(outcome.status.status["children"])
    assert outcome.status.status["tensorboard"] == {"state": "Removed", "removeAt": "2026-12-01T11:50:00Z"}
    assert outcome.status.status["phase"] == "Succeeded"
    assert outcome.status.requeue_at is None
    # Gone by design: no TensorBoardAvailable condition claims it is missing.
    assert "TensorBoardAvailable" not in {c["type"] for c in outcome.status.status["conditions"]}
    assert {f"{ref.kind}/{ref.name}" for ref in deletions(outcome, existing(all_children()))} == TENSORBOARD
    # Converged afterwards: the next pass finds nothing to ensure, delete or write.
    removed = with_status(body, outcome.status.status)
    after = run(FTJ, removed, observed_job=done, now=NOW)
    assert after.children.ensure == [] and after.status.patch is None and after.status.requeue_at is None


def test_a_ttl_of_zero_asks_for_a_pass_at_once_after_the_one_that_saw_the_run_finish() -> None:
    _, _, status_plan = finished(ttl=0)
    assert status_plan.requeue_at == COMPLETED  # already past: the controller submits it without delay
    assert status_plan.status["tensorboard"]["state"] == "Retained"


def test_without_a_spec_ttl_the_operator_setting_applies() -> None:
    _, _, status_plan = finished()
    assert status_plan.requeue_at == COMPLETED + dt.timedelta(seconds=SETTINGS.tensorboard_ttl_seconds_after_finished)
    assert SETTINGS.tensorboard_ttl_seconds_after_finished == DAY


def test_raising_the_ttl_after_the_removal_brings_the_tensorboard_back() -> None:
    body, done, _ = finished(ttl=600)
    removed = with_status(body, run(FTJ, body, observed_job=done, now=NOW).status.status)
    longer = copy.deepcopy(removed)
    longer["spec"]["tensorboard"]["ttlSecondsAfterFinished"] = 2 * DAY
    outcome = run(FTJ, longer, observed_job=done, now=NOW)
    assert TENSORBOARD <= {f"{c['kind']}/{c['metadata']['name']}" for c in outcome.children.ensure}
    assert outcome.status.status["tensorboard"]["state"] == "Retained"


def test_a_disabled_tensorboard_has_no_retention_in_status() -> None:
    body, done, _ = finished(ttl=600)
    off = copy.deepcopy(body)
    off["spec"]["tensorboard"] = {"enabled": False}
    outcome = run(FTJ, off, observed_job=done, now=COMPLETED + dt.timedelta(seconds=10))
    assert "tensorboard" not in outcome.status.status and outcome.status.patch["tensorboard"] is None
    assert outcome.status.requeue_at is None


def test_a_running_job_has_no_retention_yet() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job, verify_children=True)
    assert "tensorboard" not in outcome.status.status and outcome.status.requeue_at is None
