"""The workload -> operator report contract (mmft_operator.contracts.progress), field by field.

For every status field the CRDs document that comes from a workload, the workload's own writer puts it in the
report and the kind's status composition (reconcile/<kind>.py extra_status) puts it into status: through JSON and
the engine's kind-agnostic read (WorkloadReport.from_json), as through the report ConfigMap. The tables are checked
against the contract models, so a field added to a model without a row here fails. The composed status validates
against the kind's API status model (the CRD's schema). The evaluator's metrics have their own table in
test_evaluation_results.py; the trainer callback's fields from a real run are checked in
tests/ml/test_trainer_train.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from dataprep_fixtures import SmallDataset
from mmft_evaluator.cli_evaluate import contract_results, scoring_progress
from mmft_evaluator.evaluation import Progress
from mmft_operator.api.datasetprep import DatasetPrepSpec, DatasetPrepStatus
from mmft_operator.api.evaluation import EvaluationSpec, EvaluationStatus
from mmft_operator.api.finetunejob import FineTuneJobSpec, FineTuneJobStatus
from mmft_operator.builders.common import Owner
from mmft_operator.cli import main as mmft
from mmft_operator.contracts.progress import (
    DatasetPrepResults,
    EvaluationOutputs,
    EvaluationReport,
    ScoringProgress,
    SplitCounts,
    TrainingOutputs,
    TrainingProgress,
    WorkloadReport,
)
from mmft_operator.contracts.report_writer import ReportWriter
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.engine import Observed
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from mmft_operator.status import workload
from mmft_trainer.reporting import RunReporter
from pydantic import ValidationError

RUNNING = workload.WorkloadVerdict(phase=workload.RUNNING, reason="Running", message="1 pod(s) running")


def _observed(report_file: Path) -> Observed:
    """What the engine hands a kind: the envelope read from the report's JSON without knowing the kind."""
    return Observed(job=None, pods=[], report=WorkloadReport.from_json(report_file.read_text()), verdict=RUNNING)


# --- DatasetPrep: counts and outputs, from a real `mmft dataprep` run ------------------------------------------

PREP_OWNER = Owner(kind="DatasetPrep", name="isic", namespace="ml", uid="u-1")
# stats.json's names (pipeline._stats) of each count the report carries in the API's names.
STATS_NAME_OF_SPLIT_COUNT = {"images": "images", "positives": "positive", "negatives": "negative",
                             "groups": "patients", "lines": "lines", "linesPositive": "linesPositive"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One real run: (the status the operator composes from its report, stats.json, the report file's outputs)."""
    root = tmp_path_factory.mktemp("prep")
    dataset = SmallDataset(root)
    output = tmp_path_factory.mktemp("mnt") / "prepared"
    report_file = output.parent / "report.json"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MMFT_REPORT_FILE", str(report_file))
        env.delenv("MMFT_REPORT_CONFIGMAP", raising=False)
        code = mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-dir", str(dataset.images_dir),
                     "--output-dir", str(output), "--image-size", "48", "--balance", "oversample",
                     "--duplicates-csv", str(dataset.duplicates_csv)])
    assert code == 0
    spec = DatasetPrepSpec.model_validate({
        "source": {"labelsCsv": "gs://raw/labels.csv", "imagesPath": "/mnt/gcs/raw"},
        "bucket": {"name": "data"}, "output": {"path": "prepared"}})
    status = DatasetPrepReconciler().extra_status(PREP_OWNER, spec, _observed(report_file))
    stats = json.loads((output / "stats.json").read_text())
    return status, stats, json.loads(report_file.read_text())["outputs"]


def test_the_split_count_table_covers_the_contract():
    assert set(STATS_NAME_OF_SPLIT_COUNT) == set(SplitCounts.model_fields)


@pytest.mark.parametrize("split", ["train", "validation", "test"])
@pytest.mark.parametrize("count", sorted(STATS_NAME_OF_SPLIT_COUNT))
def test_each_split_count_reaches_status(prepared, split, count):
    status, stats, _ = prepared
    assert status["results"]["splits"][split][count] == stats["splits"][split][STATS_NAME_OF_SPLIT_COUNT[count]]


def test_balancing_shows_in_the_train_lines(prepared):
    status, _, _ = prepared
    train = status["results"]["splits"]["train"]
    assert train["lines"] > train["images"] and train["linesPositive"] > train["positives"]


# Each total the report carries, computed here from stats.json independently of the contract's own sums.
PREP_TOTALS = {
    "images": lambda stats: sum(split["images"] for split in stats["splits"].values()),
    "positives": lambda stats: sum(split["positive"] for split in stats["splits"].values()),
    "dropped": lambda stats: stats["dropped"]["count"],
    "droppedByReason": lambda stats: stats["dropped"]["byReason"],
}


def test_the_totals_table_covers_the_contract():
    assert set(PREP_TOTALS) | {"splits"} == set(DatasetPrepResults.model_fields)


@pytest.mark.parametrize("field", sorted(PREP_TOTALS))
def test_each_dataset_total_reaches_status(prepared, field):
    status, stats, _ = prepared
    expected = PREP_TOTALS[field](stats)
    assert expected, f"the run must make a non-zero {field} for this test to mean anything"
    assert status["results"][field] == expected


def test_the_dataset_status_is_valid_for_the_crd(prepared):
    status, _, _ = prepared
    assert DatasetPrepStatus.model_validate(status).results.images == status["results"]["images"]


@pytest.mark.parametrize("output", ["trainJsonl", "validationJsonl", "testJsonl", "statsJson", "imagesDir"])
def test_each_dataset_output_reaches_status(prepared, output):
    status, _, reported = prepared
    assert status["outputs"][output] == reported[output]


def test_a_report_of_the_old_shape_is_ignored_with_a_warning(tmp_path, caplog):
    """The split counts in stats.json's names (what the previous version wrote): not read, and said so."""
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps({"phase": "Completed", "results": {
        "splits": {"train": {"images": 4, "positive": 1, "negative": 3, "patients": 2}}, "dropped": 0}}))
    spec = DatasetPrepSpec.model_validate({"source": {"labelsCsv": "gs://raw/labels.csv", "imagesPath": "/mnt/gcs/r"},
                                           "bucket": {"name": "data"}, "output": {"path": "prepared"}})
    with caplog.at_level(logging.WARNING):
        status = DatasetPrepReconciler().extra_status(PREP_OWNER, spec, _observed(report_file))
    assert "results" not in status and status["outputs"]["trainJsonl"] == "/mnt/gcs/prepared/train.jsonl"
    assert "ml/isic: ignoring unreadable dataset results" in caplog.text


# --- FineTuneJob: progress and outputs, through the trainer's RunReporter ----------------------------------------

TRAIN_OWNER = Owner(kind="FineTuneJob", name="lora", namespace="ml", uid="u-2")
TRAINING_PROGRESS = {"step": 7, "totalSteps": 70, "epoch": 0.25, "loss": 1.25, "learningRate": 0.0002,
                     "samplesPerSecond": 3.5, "etaSeconds": 630, "tokensPerSecond": 812.5, "peakGpuMemoryGiB": 41.2,
                     "modelLoadSeconds": 95.3, "firstStepSeconds": 12.4, "lastCheckpoint": "/out/checkpoint-7"}
TRAINING_OUTPUTS = {"outputDir": "/out", "tensorboardDir": "/mnt/gcs/mmft/ml/lora/tensorboard-sync",
                    "adapterUri": "gs://models/lora/adapter", "mergedUri": "gs://models/lora/merged"}
# status.startup stages the trainer reports, by their progress names.
STARTUP_FROM_PROGRESS = {"loadingModelSeconds": "modelLoadSeconds", "firstStepSeconds": "firstStepSeconds"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    report_file = tmp_path_factory.mktemp("train") / "report.json"
    reporter = RunReporter(ReportWriter(report_file=report_file))
    reporter.phase("Running")
    for name, value in TRAINING_OUTPUTS.items():
        reporter.output(name, value)
    reporter.progress(force=True, **TRAINING_PROGRESS)
    spec = FineTuneJobSpec.model_validate({
        "baseModel": "google/gemma-3-4b-it", "dataset": {"trainPath": "/mnt/gcs/data/train.jsonl"},
        "training": {"maxSteps": 70}, "bucket": {"name": "data"}, "export": {"uri": "gs://models/lora"}})
    return FineTuneJobReconciler().extra_status(TRAIN_OWNER, spec, _observed(report_file))


def test_the_training_tables_cover_the_contract():
    assert set(TRAINING_PROGRESS) == set(TrainingProgress.model_fields)
    assert set(TRAINING_OUTPUTS) == set(TrainingOutputs.model_fields)


@pytest.mark.parametrize("field", sorted(TRAINING_PROGRESS))
def test_each_training_progress_field_reaches_status(trained, field):
    assert trained["progress"][field] == TRAINING_PROGRESS[field]


def test_training_progress_has_its_summary(trained):
    assert trained["progress"]["summary"] == "7/70 (10%)"


@pytest.mark.parametrize("stage", sorted(STARTUP_FROM_PROGRESS))
def test_each_reported_startup_stage_reaches_status(trained, stage):
    assert trained["startup"][stage] == TRAINING_PROGRESS[STARTUP_FROM_PROGRESS[stage]]


@pytest.mark.parametrize("output", sorted(TRAINING_OUTPUTS))
def test_each_training_output_reaches_status(trained, output):
    assert trained["outputs"][output] == TRAINING_OUTPUTS[output]


def test_the_training_status_is_valid_for_the_crd(trained):
    assert FineTuneJobStatus.model_validate(trained).progress.loss == TRAINING_PROGRESS["loss"]


def test_the_trainer_cannot_write_a_field_the_operator_does_not_read(tmp_path):
    reporter = RunReporter(ReportWriter(report_file=tmp_path / "report.json"))
    with pytest.raises(ValidationError, match="trainLoss"):
        reporter.progress(trainLoss=0.5)
    with pytest.raises(ValidationError, match="adapterURI"):
        reporter.output("adapterURI", "gs://models/lora/adapter")


# --- Evaluation: scoring progress and outputs, through the evaluator's own conversions ----------------------------

EVAL_OWNER = Owner(kind="Evaluation", name="melanoma", namespace="ml", uid="u-3")
# The run's Progress (evaluation.Progress) and what each contract field must say of it.
RUN_PROGRESS = Progress(model="tuned", done=640, total=3313, rate=61.2, eta=43.7)
SCORING_PROGRESS = {"model": "tuned", "scored": 640, "total": 3313, "imagesPerSecond": 61.2, "etaSeconds": 43}
EVALUATION_OUTPUTS = {"report": "gs://reports/melanoma/report.html", "metrics": "gs://reports/melanoma/metrics.json",
                      "predictions": "gs://reports/melanoma/predictions.jsonl"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> dict:
    report_file = tmp_path_factory.mktemp("evaluate") / "report.json"
    summary = {"models": {"tuned": {"metrics": {"balanced_accuracy": 0.7}, "threshold": 0.5}}, "best": "tuned"}
    report = EvaluationReport(phase="Running", progress=scoring_progress(RUN_PROGRESS),
                              outputs=EvaluationOutputs(**EVALUATION_OUTPUTS), results=contract_results(summary))
    ReportWriter(report_file=report_file).publish(report)
    spec = EvaluationSpec.model_validate({
        "dataset": {"testPath": "/mnt/gcs/data/test.jsonl"}, "bucket": {"name": "data"},
        "models": [{"name": "tuned", "huggingFace": "google/gemma-3-4b-it"}], "outputPath": "evaluations/melanoma",
        "outputUri": "gs://reports/melanoma"})
    return EvaluationReconciler().extra_status(EVAL_OWNER, spec, _observed(report_file))


def test_the_evaluation_tables_cover_the_contract():
    assert set(SCORING_PROGRESS) == set(ScoringProgress.model_fields)
    assert set(EVALUATION_OUTPUTS) == set(EvaluationOutputs.model_fields)


@pytest.mark.parametrize("field", sorted(SCORING_PROGRESS))
def test_each_scoring_progress_field_reaches_status(evaluated, field):
    assert evaluated["progress"][field] == SCORING_PROGRESS[field]


def test_scoring_progress_has_its_summary(evaluated):
    assert evaluated["progress"]["summary"] == "640/3313 (19%)"


@pytest.mark.parametrize("output", sorted(EVALUATION_OUTPUTS))
def test_each_evaluation_output_reaches_status(evaluated, output):
    assert evaluated["outputs"][output] == EVALUATION_OUTPUTS[output]


def test_the_evaluation_status_is_valid_for_the_crd(evaluated):
    status = EvaluationStatus.model_validate(evaluated)
    assert status.progress.scored == 640 and status.models[0].balancedAccuracy == 0.7


def test_an_unreadable_part_leaves_the_others_readable(tmp_path, caplog):
    """The previous evaluator's progress (TrainingProgress names) beside valid results: the results still reach
    status, the progress is named in a warning and left out."""
    report_file = tmp_path / "report.json"
    report_file.write_text(json.dumps({
        "phase": "Completed", "progress": {"step": 3313, "totalSteps": 3313, "samplesPerSecond": 61.2},
        "outputs": EVALUATION_OUTPUTS, "results": {"models": {"tuned": {"balancedAccuracy": 0.7}}, "best": "tuned"}}))
    spec = EvaluationSpec.model_validate({
        "dataset": {"testPath": "/mnt/gcs/data/test.jsonl"}, "bucket": {"name": "data"},
        "models": [{"name": "tuned", "huggingFace": "google/gemma-3-4b-it"}], "outputPath": "evaluations/melanoma"})
    with caplog.at_level(logging.WARNING):
        status = EvaluationReconciler().extra_status(EVAL_OWNER, spec, _observed(report_file))
    assert "progress" not in status
    assert status["models"] == [{"name": "tuned", "balancedAccuracy": 0.7}] and status["bestModel"] == "tuned"
    assert "ml/melanoma: ignoring unreadable evaluation progress" in caplog.text


# --- Before any report: the locations the operator chooses itself are declared in the CRD too ----------------------

NO_REPORT = Observed(job=None, pods=[], report=None, verdict=RUNNING)


def test_the_outputs_the_operator_chooses_are_valid_for_each_crd():
    prep_spec = DatasetPrepSpec.model_validate({
        "source": {"labelsCsv": "gs://raw/labels.csv", "imagesPath": "/mnt/gcs/raw"},
        "bucket": {"name": "data"}, "output": {"path": "prepared"}})
    train_spec = FineTuneJobSpec.model_validate({
        "baseModel": "google/gemma-3-4b-it", "dataset": {"trainPath": "/mnt/gcs/data/train.jsonl"},
        "training": {"maxSteps": 70}, "bucket": {"name": "data"}})
    eval_spec = EvaluationSpec.model_validate({
        "dataset": {"testPath": "/mnt/gcs/data/test.jsonl"}, "bucket": {"name": "data"},
        "models": [{"name": "base", "huggingFace": "google/gemma-3-4b-it"}], "outputPath": "evaluations/melanoma"})
    prep = DatasetPrepReconciler().extra_status(PREP_OWNER, prep_spec, NO_REPORT)
    train = FineTuneJobReconciler().extra_status(TRAIN_OWNER, train_spec, NO_REPORT)
    scored = EvaluationReconciler().extra_status(EVAL_OWNER, eval_spec, NO_REPORT)
    assert DatasetPrepStatus.model_validate(prep).outputs.trainJsonl == "/mnt/gcs/prepared/train.jsonl"
    assert FineTuneJobStatus.model_validate(train).outputs.checkpointVolume == train["outputs"]["checkpointVolume"]
    assert EvaluationStatus.model_validate(scored).outputs.report.endswith("/evaluations/melanoma/report.html")


# --- Which Job wrote it --------------------------------------------------------------------------------------------


def test_the_writer_stamps_every_report_with_its_jobs_uid_from_the_pods_environment(tmp_path, monkeypatch):
    """builders/common.workload_env gives MMFT_JOB_UID from the Job controller's label (downward API); the engine
    drops a report whose UID is another Job's (reconcile/lifecycle.report_of)."""
    from mmft_operator.builders.common import workload_env
    from mmft_operator.contracts.progress import ENV_JOB_UID
    from mmft_operator.settings import OperatorSettings

    env = {item["name"]: item for item in workload_env(PREP_OWNER, "/tmp/report.json", OperatorSettings())}
    field = env[ENV_JOB_UID]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['batch.kubernetes.io/controller-uid']"
    report_file = tmp_path / "report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(report_file))
    monkeypatch.delenv("MMFT_REPORT_CONFIGMAP", raising=False)
    monkeypatch.setenv(ENV_JOB_UID, "job-uid-7")
    ReportWriter.from_environment().publish(WorkloadReport(phase="Running"))
    assert WorkloadReport.from_json(report_file.read_text()).jobUid == "job-uid-7"
    monkeypatch.delenv(ENV_JOB_UID)
    ReportWriter.from_environment().publish(WorkloadReport(phase="Running"))
    assert WorkloadReport.from_json(report_file.read_text()).jobUid is None
