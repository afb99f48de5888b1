"""The planner's lifecycle rules for all three kinds (reconcile/lifecycle.py): a finished run never creates its Job
again and keeps its status when the Job goes; the finished Job's TTL follows the outcome; raising spec.retry replaces
a Failed run's Job in place. tests/integration/test_lifecycle_terminal.py drives the same rules through a cluster."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import pytest
from mmft_operator.contracts.progress import (
    DatasetPrepReport,
    DatasetPrepResults,
    SplitCounts,
    TrainingProgress,
    TrainingReport,
    WorkloadReport,
)
from mmft_operator.reconcile import engine
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.engine import KindReconciler, Reference
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from mmft_operator.reconcile.lifecycle import FINAL, REPLACE, RUN
from mmft_operator.settings import OperatorSettings
from planner_world import NOW, SETTINGS, job_condition, pod, run, sample, succeeded, with_status

PREP_OUTPUTS = {"trainJsonl": "/mnt/gcs/prepared/isic2020/train.jsonl",
                "validationJsonl": "/mnt/gcs/prepared/isic2020/validation.jsonl",
                "testJsonl": "/mnt/gcs/prepared/isic2020/test.jsonl"}
ADAPTER = "gs://my-mmft-bucket/tuned-models/gemma3-melanoma/adapter"
READY = {
    Reference("DatasetPrep", "isic2020"): succeeded(sample("datasetprep.yaml"), PREP_OUTPUTS),
    Reference("FineTuneJob", "gemma3-melanoma"): succeeded(sample("finetunejob.yaml"), {"adapterUri": ADAPTER}),
}


@dataclass(frozen=True)
class Kind:
    reconciler: KindReconciler
    sample: str
    job_name: str
    container: str


KINDS = [
    Kind(DatasetPrepReconciler(), "datasetprep.yaml", "isic2020-dataprep", "workload"),
    Kind(FineTuneJobReconciler(), "finetunejob.yaml", "gemma3-melanoma-train", "trainer"),
    Kind(EvaluationReconciler(), "evaluation.yaml", "gemma3-melanoma-evaluator", "workload"),
]
KIND_IDS = ["DatasetPrep", "FineTuneJob", "Evaluation"]
FINISHED = {
    "Succeeded": {"startTime": "2026-12-01T11:00:05Z", "completionTime": "2026-12-01T11:40:00Z",
                  "conditions": [job_condition("Complete")]},
    "Failed": {"startTime": "2026-12-01T11:00:05Z", "conditions": [job_condition("Failed", "PodFailurePolicy")]},
}
OUT_OF_MEMORY = {"exitCode": 87, "message": "CUDA out of memory"}


def finished(kind: Kind, outcome: str, **spec: Any) -> tuple[dict, dict, list[dict]]:
    """A resource of `kind` whose Job ended with `outcome` and whose status records it: (body, job, pods)."""
    body = sample(kind.sample, **spec)
    first = run(kind.reconciler, body, referenced=READY)
    job = {**first.applied.job, "status": copy.deepcopy(FINISHED[outcome])}
    pods = [pod("Succeeded", container=kind.container)] if outcome == "Succeeded" else [
        pod("Failed", terminated=OUT_OF_MEMORY, container=kind.container)]
    body = with_status(body, first.status.status)
    done = run(kind.reconciler, body, observed_job=job, pods=pods, referenced=READY)
    assert done.status.status["phase"] == outcome
    return with_status(body, done.status.status), job, pods


def without(conditions: list[dict], type_: str) -> list[dict]:
    return [condition for condition in conditions if condition["type"] != type_]


# -- terminal means terminal -------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
@pytest.mark.parametrize("verify_children", [False, True], ids=["event", "resync"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_finished_run_whose_job_is_gone_creates_no_job_and_keeps_its_status(kind, outcome, verify_children):
    body, _, _ = finished(kind, outcome)
    recorded = body["status"]
    # The Job collected by its TTL (or deleted by hand); the same after an operator restart, which only re-reads.
    gone = run(kind.reconciler, body, observed_job=None, referenced={}, verify_children=verify_children)
    assert gone.children.stage == FINAL
    assert gone.references == [], "a finished run resolves nothing again"
    assert not any(child["kind"] == "Job" for child in gone.children.ensure)
    assert gone.applied.job is None
    status = gone.status.status
    for key in ("phase", "reason", "startTime", "completionTime", "resolved", "outputs", "attempt"):
        assert status.get(key) == recorded.get(key), key
    assert without(status["conditions"], "JobRetained") == without(recorded["conditions"], "JobRetained")
    retained = gone.condition("JobRetained")
    assert (retained["status"], retained["reason"]) == ("False", "JobDeleted")
    assert "not repeated" in retained["message"]
    assert ("raise spec.retry" in retained["message"]) == (outcome == "Failed")
    assert gone.status.event is None, "the phase did not change: no transition event"
    # Written once; every later pass with the Job still gone writes nothing.
    again = run(kind.reconciler, with_status(body, status), observed_job=None, verify_children=verify_children)
    assert again.status.patch is None and not any(child["kind"] == "Job" for child in again.children.ensure)


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_spec_that_turns_invalid_after_the_run_keeps_the_outcome_and_says_so(kind, outcome):
    body, job, pods = finished(kind, outcome)
    recorded = body["status"]
    invalid = copy.deepcopy(body)
    invalid["spec"]["image"] = {"unknownField": 1}  # what a stricter operator version, or a bypassed check, meets
    invalid["metadata"]["generation"] = body["metadata"].get("generation", 1) + 1
    later = run(kind.reconciler, invalid, observed_job=job, pods=pods)
    assert later.children.ensure == [] and later.references == []
    status = later.status.status
    for key in ("phase", "reason", "startTime", "completionTime", "outputs", "attempt"):
        assert status.get(key) == recorded.get(key), key
    config = later.condition("ConfigValid")
    assert (config["status"], config["reason"]) == ("False", "SpecInvalid")
    assert config["message"].startswith("spec.image")
    assert later.condition("Ready") == next(c for c in recorded["conditions"] if c["type"] == "Ready")
    assert status["observedGeneration"] == invalid["metadata"]["generation"]
    assert later.status.event is None, "the outcome did not change: the condition says what is wrong"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_the_verdict_of_a_finished_job_is_not_recomputed_when_its_pods_or_report_go(kind):
    body, job, _ = finished(kind, "Failed")
    assert body["status"]["reason"] == "OutOfMemory"
    later = run(kind.reconciler, body, observed_job=job, pods=[])  # the pod garbage-collected, the Job still there
    assert later.children.stage == FINAL
    assert (later.status.status["phase"], later.status.status["reason"]) == ("Failed", "OutOfMemory")
    assert later.status.patch is None


def test_a_finished_finetunejob_keeps_what_its_pods_and_report_said_after_they_are_gone():
    kind = KINDS[1]
    body = sample(kind.sample)
    first = run(kind.reconciler, body, referenced=READY)
    job = {**first.applied.job, "status": copy.deepcopy(FINISHED["Succeeded"])}
    report = WorkloadReport(phase="Completed", outputs={"adapterUri": ADAPTER})
    pods = [pod("Failed", terminated={"exitCode": 1}), pod("Succeeded")]
    done = run(kind.reconciler, with_status(body, first.status.status), observed_job=job, pods=pods, report=report)
    recorded = done.status.status
    assert (recorded["failures"], recorded["outputs"]["adapterUri"]) == (1, ADAPTER)
    gone = run(kind.reconciler, with_status(body, recorded), observed_job=job, pods=[], report=None)
    assert (gone.status.status["failures"], gone.status.status["outputs"]["adapterUri"]) == (1, ADAPTER)
    assert gone.status.patch is None


def test_a_report_read_after_the_jobs_end_still_reaches_a_finished_status():
    kind = KINDS[0]
    body, job, pods = finished(kind, "Succeeded")
    assert "results" not in body["status"]
    results = DatasetPrepResults.of_splits({"train": SplitCounts(images=8, positives=1, negatives=7, groups=2)}, {})
    report = DatasetPrepReport(phase="Completed", results=results)
    late = run(kind.reconciler, body, observed_job=job, pods=pods, report=report)
    assert late.status.status["results"]["splits"]["train"]["images"] == 8
    assert late.status.patch is not None
    assert late.status.status["phase"] == "Succeeded"


def test_a_retry_raised_on_a_succeeded_run_is_ignored():
    kind = KINDS[1]
    body, _, _ = finished(kind, "Succeeded")
    body["spec"]["retry"] = 1  # the API server refuses this; the planner does not rely on it
    outcome = run(kind.reconciler, body, observed_job=None)
    assert outcome.children.stage == FINAL and outcome.status.status["phase"] == "Succeeded"
    assert not any(child["kind"] == "Job" for child in outcome.children.ensure)


def test_downstream_resources_still_chain_off_a_finetunejob_whose_job_was_collected():
    ftj = KINDS[1]
    body = sample(ftj.sample)
    first = run(ftj.reconciler, body, referenced=READY)
    job = {**first.applied.job, "status": copy.deepcopy(FINISHED["Succeeded"])}
    report = WorkloadReport(phase="Completed", outputs={"adapterUri": ADAPTER})
    done = run(ftj.reconciler, with_status(body, first.status.status), observed_job=job, report=report)
    gone = run(ftj.reconciler, with_status(body, done.status.status), observed_job=None)
    tuned = with_status(body, gone.status.status)
    evaluation = run(KINDS[2].reconciler, sample("evaluation.yaml"),
                     referenced={**READY, Reference("FineTuneJob", "gemma3-melanoma"): tuned})
    assert evaluation.status.status["resolved"]["model.tuned"].endswith(ADAPTER)
    assert "Job/gemma3-melanoma-evaluator" in evaluation.created


# -- the finished Job's TTL follows the outcome ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "spec_ttl", "settings", "wanted"),
    [
        ("Succeeded", None, SETTINGS, 24 * 3600),
        ("Failed", None, SETTINGS, 7 * 24 * 3600),
        ("Succeeded", 5, SETTINGS, 5),
        ("Failed", 0, SETTINGS, 0),
        ("Succeeded", None, replace(SETTINGS, succeeded_job_ttl_seconds=60), 60),
        ("Failed", None, replace(SETTINGS, failed_job_ttl_seconds=3600), 3600),
    ],
    ids=["succeeded-default", "failed-default", "spec-overrides", "spec-zero", "succeeded-setting", "failed-setting"],
)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_the_finished_jobs_ttl_is_set_by_outcome_once_status_records_it(kind, outcome, spec_ttl, settings, wanted):
    spec = {} if spec_ttl is None else {"ttlSecondsAfterFinished": spec_ttl}
    body = sample(kind.sample, **spec)
    first = run(kind.reconciler, body, referenced=READY)
    created = first.applied.job
    assert "ttlSecondsAfterFinished" not in created["spec"], "no TTL before the outcome is recorded"
    assert engine.job_ttl_change(first.children, first.status, created, settings) is None
    job = {**created, "status": copy.deepcopy(FINISHED[outcome])}
    done = run(kind.reconciler, with_status(body, first.status.status), observed_job=job)
    assert done.status.status["phase"] == outcome
    assert engine.job_ttl_change(done.children, done.status, job, settings) == wanted
    retained = done.condition("JobRetained")
    assert retained["status"] == "True" and f"({SETTINGS_TTL(spec_ttl, outcome)} s after" in retained["message"]
    collected = {**job, "spec": {**job["spec"], "ttlSecondsAfterFinished": wanted}}
    assert engine.job_ttl_change(done.children, done.status, collected, settings) is None


def SETTINGS_TTL(spec_ttl: int | None, outcome: str) -> int:  # noqa: N802 - what planner_world.SETTINGS keep
    if spec_ttl is not None:
        return spec_ttl
    return SETTINGS.succeeded_job_ttl_seconds if outcome == "Succeeded" else SETTINGS.failed_job_ttl_seconds


def test_the_retention_settings_come_from_the_environment_and_refuse_negative_seconds():
    settings = OperatorSettings.from_environment(
        {"MMFT_SUCCEEDED_JOB_TTL_SECONDS": "5", "MMFT_FAILED_JOB_TTL_SECONDS": "50"})
    assert (settings.succeeded_job_ttl_seconds, settings.failed_job_ttl_seconds) == (5, 50)
    assert OperatorSettings().failed_job_ttl_seconds > OperatorSettings().succeeded_job_ttl_seconds
    with pytest.raises(ValueError, match="MMFT_FAILED_JOB_TTL_SECONDS=-1"):
        OperatorSettings.from_environment({"MMFT_FAILED_JOB_TTL_SECONDS": "-1"})


# -- retry in place ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_still_there", [True, False], ids=["job-present", "job-collected"])
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_raising_retry_on_a_failed_run_replaces_its_job_in_place(kind, job_still_there):
    body, failed_job, failed_pods = finished(kind, "Failed")
    body = copy.deepcopy(body)
    body["spec"]["retry"] = 1
    body["metadata"]["generation"] = 2
    if job_still_there:
        # Delete first: nothing is created while the failed attempt's Job exists.
        replacing = run(kind.reconciler, body, observed_job=failed_job, pods=failed_pods)
        assert replacing.children.stage == REPLACE
        assert replacing.children.replaced_job is failed_job and replacing.children.ensure == []
        status = replacing.status.status
        assert (status["phase"], status["reason"], status["attempt"]) == ("Pending", "Retrying", 1)
        assert "startTime" not in status and "completionTime" not in status
        assert replacing.condition("Failed")["status"] == "False"
        assert replacing.status.event.reason == "Retrying"
        body = with_status(body, status)
        # The old Job still observed (its deletion not seen yet): still replacing, still nothing created.
        still = run(kind.reconciler, body, observed_job=failed_job, pods=failed_pods)
        assert still.children.stage == REPLACE and still.children.ensure == []
        assert still.status.patch is None
    # Gone: the new Job, same name, stamped with the attempt; its status starts afresh.
    terminating_old_pod = failed_pods[0]  # still terminating, same job-name label, the old Job's UID
    new = run(kind.reconciler, body, observed_job=None, pods=[], referenced=READY)
    assert new.children.stage == RUN
    jobs = [child for child in new.children.ensure if child["kind"] == "Job"]
    assert [job["metadata"]["name"] for job in jobs] == [kind.job_name]
    assert jobs[0]["metadata"]["annotations"]["mmft.io/attempt"] == "1"
    created = {**new.applied.job, "metadata": {**new.applied.job["metadata"], "uid": "job-attempt-1"}}
    status = new.status.status
    assert (status["phase"], status["attempt"]) == ("Pending", 1)
    assert "completionTime" not in status
    body = with_status(body, status)
    running = run(kind.reconciler, body, observed_job=created,
                  pods=[terminating_old_pod, pod("Running", container=kind.container, job_uid="job-attempt-1")])
    assert running.status.status["phase"] == "Running"
    assert running.status.status.get("failures", 0) == 0, "the old Job's pods are not this attempt's"
    assert running.condition("Running")["message"] == "1 pod(s) running"
    # Its own verdict decides: this attempt succeeds.
    done_job = {**created, "status": copy.deepcopy(FINISHED["Succeeded"])}
    done = run(kind.reconciler, with_status(body, running.status.status), observed_job=done_job)
    assert (done.status.status["phase"], done.status.status["attempt"]) == ("Succeeded", 1)
    assert done.status.status["completionTime"] == "2026-12-01T11:40:00Z"


def test_a_report_of_an_earlier_job_of_the_same_name_never_reaches_the_new_attempts_status():
    """The report ConfigMap outlives the failed attempt's Job; until the new Job's pod writes its own, the old one
    (progress at step 40, preflight passed) must not show as the new attempt's."""
    kind = KINDS[1]
    body, failed_job, _ = finished(kind, "Failed")
    body = copy.deepcopy(body)
    body["spec"]["retry"] = 1
    new_job = {**failed_job, "metadata": {**failed_job["metadata"], "uid": "job-attempt-1",
                                          "annotations": {"mmft.io/attempt": "1"}}, "status": {}}
    old_report = TrainingReport(phase="Running", jobUid=failed_job["metadata"]["uid"],
                                progress=TrainingProgress(step=40, totalSteps=100))
    waiting = run(kind.reconciler, body, observed_job=new_job, pods=[pod("Pending", job_uid="job-attempt-1")],
                  report=old_report)
    assert "progress" not in waiting.status.status
    assert waiting.condition("ConfigValid")["reason"] != "PreflightPassed"

    own = old_report.model_copy(update={"jobUid": "job-attempt-1",
                                        "progress": TrainingProgress(step=3, totalSteps=100)})
    reported = run(kind.reconciler, body, observed_job=new_job, pods=[pod("Running", job_uid="job-attempt-1")],
                   report=own)
    assert reported.status.status["progress"]["step"] == 3
    # A workload of an earlier version writes no Job UID: its report is taken as it is.
    unstamped = own.model_copy(update={"jobUid": None})
    assert run(kind.reconciler, body, observed_job=new_job, pods=[pod("Running", job_uid="job-attempt-1")],
               report=unstamped).status.status["progress"]["step"] == 3


def test_an_earlier_attempts_job_read_back_while_creating_is_not_judged_as_the_new_one():
    kind = KINDS[0]
    body, failed_job, failed_pods = finished(kind, "Failed")
    body = copy.deepcopy(body)
    body["spec"]["retry"] = 1
    # The cache said "gone", but creating found the old Job still there (kube.ensure returns the existing one).
    parsed = engine.parse(kind.reconciler, body)
    world = engine.World(body, None, {}, NOW, SETTINGS)
    plan = engine.plan_children(kind.reconciler, world, parsed)
    applied = engine.applied_children(plan, failed_job, None)
    status = engine.plan_status(kind.reconciler, world, plan, applied, failed_pods, None).status
    assert (status["phase"], status["reason"], status["attempt"]) == ("Pending", "Retrying", 1)


def test_a_new_resource_created_with_a_retry_counter_runs_that_attempt():
    kind = KINDS[0]
    outcome = run(kind.reconciler, sample(kind.sample, retry=3))
    job = next(child for child in outcome.children.ensure if child["kind"] == "Job")
    assert job["metadata"]["annotations"]["mmft.io/attempt"] == "3"
    assert outcome.status.status["attempt"] == 3
    first_run = run(kind.reconciler, sample(kind.sample))
    assert "mmft.io/attempt" not in next(c for c in first_run.children.ensure if c["kind"] == "Job")["metadata"][
        "annotations"]
