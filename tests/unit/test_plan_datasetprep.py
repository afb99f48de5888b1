"""The planner for a DatasetPrep, observed world -> plan: no prerequisites, a CPU Job, split counts from the report
(the paths tests/integration/test_operator.py drives through a cluster)."""

from __future__ import annotations

from mmft_operator.contracts.progress import DatasetPrepReport, DatasetPrepResults, SplitCounts
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from planner_world import converge, job_condition, pod, run, sample, with_status

DSP = DatasetPrepReconciler()
JOB_NAME = "isic2020-dataprep"


def test_a_new_datasetprep_references_nothing_and_creates_its_job_with_its_outputs_in_status() -> None:
    outcome = run(DSP, sample("datasetprep.yaml"))
    assert outcome.references == []
    assert f"Job/{JOB_NAME}" in outcome.created and outcome.children.expect_missing
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", "Starting")
    assert status["outputs"]["trainJsonl"] == "/mnt/gcs/prepared/isic2020/train.jsonl"
    assert "DatasetReady" not in {c["type"] for c in status["conditions"]}


def test_success_carries_the_reported_split_counts_and_the_workloads_message() -> None:
    body, created = converge(DSP, sample("datasetprep.yaml"))
    done = {**created.applied.job, "status": {"startTime": "2026-12-01T11:00:05Z",
                                              "completionTime": "2026-12-01T11:20:00Z",
                                              "conditions": [job_condition("Complete")]}}
    results = DatasetPrepResults.of_splits(
        {"train": SplitCounts(images=80, positives=8, negatives=72, groups=20),
         "test": SplitCounts(images=20, positives=2, negatives=18, groups=5)},
        {"missing_file": 3, "corrupt": 1},
    )
    report = DatasetPrepReport(phase="Completed", message="33126 images in 3 splits", results=results)
    outcome = run(DSP, body, observed_job=done, pods=[pod("Succeeded", container="dataprep")], report=report)
    status = outcome.status.status
    assert (status["phase"], status["completionTime"]) == ("Succeeded", "2026-12-01T11:20:00Z")
    assert outcome.condition("Succeeded")["message"] == "33126 images in 3 splits"
    assert (status["results"]["images"], status["results"]["positives"], status["results"]["dropped"]) == (100, 10, 4)
    assert status["results"]["splits"]["train"]["groups"] == 20
    assert outcome.status.event.reason == "Succeeded"


def test_without_a_report_success_says_the_dataset_is_prepared() -> None:
    body, created = converge(DSP, sample("datasetprep.yaml"))
    done = {**created.applied.job, "status": {"conditions": [job_condition("Complete")]}}
    assert run(DSP, body, observed_job=done).condition("Succeeded")["message"] == "the dataset is prepared"


def test_an_invalid_split_is_spec_invalid() -> None:
    invalid = sample("datasetprep.yaml", split={"train": "most"})
    outcome = run(DSP, invalid)
    assert outcome.children.ensure == []
    assert outcome.status.status["reason"] == "SpecInvalid"
    assert outcome.condition("ConfigValid")["message"].startswith("spec.split.train")


def test_an_unreadable_report_is_ignored_not_fatal() -> None:
    from mmft_operator.builders.common import Owner
    from mmft_operator.reconcile.engine import read_report

    owner = Owner("DatasetPrep", "isic2020", "ml", "u")
    assert read_report(owner, {"data": {"report.json": "{not json"}}) is None
    assert read_report(owner, None) is None
    good = DatasetPrepReport(phase="Running").to_json()
    assert read_report(owner, {"data": {"report.json": good}}).phase == "Running"


def test_a_failed_dataprep_posts_a_warning_once() -> None:
    body, created = converge(DSP, sample("datasetprep.yaml"))
    failed = {**created.applied.job, "status": {"conditions": [job_condition("Failed", "PodFailurePolicy")]}}
    pods = [pod("Failed", terminated={"exitCode": 65, "message": "no image matched the labels"},
                container="dataprep")]
    first = run(DSP, body, observed_job=failed, pods=pods)
    assert (first.status.status["reason"], first.status.event.type) == ("DataInvalid", "Warning")
    again = run(DSP, with_status(body, first.status.status), observed_job=failed, pods=pods)
    assert again.status.patch is None and again.status.event is None
