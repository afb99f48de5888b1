"""The Evaluation's report contract end to end without a cluster: what `mmft evaluate` writes
(mmft_evaluator.cli_evaluate.contract_results -> EvaluationReport.results) is what the operator puts in status
(reconcile.evaluation.EvaluationReconciler.extra_status): every metric the CRD documents, and gs:// links."""

from __future__ import annotations

import pytest
from mmft_evaluator.cli_evaluate import contract_results
from mmft_operator.api.evaluation import EvaluationSpec, ModelMetrics
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import (
    EvaluationOutputs,
    EvaluationReport,
    EvaluationResults,
    ModelResult,
    WorkloadReport,
)
from mmft_operator.reconcile.engine import Observed
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.status import workload

OWNER = Owner(kind="Evaluation", name="melanoma", namespace="ml", uid="u-1")
# The metrics of one model as mmft_evaluator.metrics.classification_metrics names them (snake_case), each value
# distinct so a field copied from the wrong source shows.
METRICS = {"accuracy": 0.81, "balanced_accuracy": 0.72, "recall": 0.63, "specificity": 0.84, "precision": 0.45,
           "roc_auc": 0.86, "pr_auc": 0.37, "f1": 0.52, "tp": 5, "fp": 6, "tn": 30, "fn": 3}
THRESHOLD = 0.28
EXPECTED = {"accuracy": 0.81, "balancedAccuracy": 0.72, "recall": 0.63, "specificity": 0.84, "precision": 0.45,
            "rocAuc": 0.86, "prAuc": 0.37, "threshold": THRESHOLD}


def _spec(**changes) -> EvaluationSpec:
    return EvaluationSpec.model_validate({
        "dataset": {"testPath": "/mnt/gcs/data/test.jsonl"},
        "models": [{"name": "base", "huggingFace": "google/gemma-3-4b-it"}],
        "bucket": {"name": "my-bucket"}, "outputPath": "evaluations/melanoma", **changes})


def _status(summary: dict, outputs: dict[str, str], spec: EvaluationSpec | None = None) -> dict:
    report = EvaluationReport(phase="Completed", outputs=EvaluationOutputs(**outputs),
                              results=contract_results(summary))
    # Through JSON, as through the report ConfigMap, read as the engine reads every kind's report.
    observed = Observed(job=None, pods=[], report=WorkloadReport.from_json(report.to_json()),
                        verdict=workload.WorkloadVerdict(phase=workload.SUCCEEDED, reason="Completed", message=""))
    return EvaluationReconciler().extra_status(OWNER, spec or _spec(), observed)


def _summary(**models) -> dict:
    return {"models": models, "best": next(iter(models))}


POD_OUTPUTS = {"report": "/mnt/gcs/evaluations/melanoma/report.html",
               "metrics": "/mnt/gcs/evaluations/melanoma/metrics.json",
               "predictions": "/mnt/gcs/evaluations/melanoma/predictions.jsonl"}


def test_the_contract_carries_every_metric_the_crd_documents():
    documented = {field.alias or name for name, field in ModelMetrics.model_fields.items() if name != "name"}
    assert set(ModelResult.model_fields) == documented


@pytest.mark.parametrize("field", sorted(EXPECTED))
def test_each_metric_reaches_status(field):
    status = _status(_summary(base={"metrics": METRICS, "threshold": THRESHOLD}), POD_OUTPUTS)
    assert status["models"][0]["name"] == "base"
    assert status["models"][0][field] == EXPECTED[field]


def test_a_failed_model_reaches_status_with_its_error_and_no_metrics():
    status = _status(_summary(base={"metrics": METRICS, "threshold": THRESHOLD},
                              medgemma={"error": "OutOfMemoryError: CUDA out of memory"}), POD_OUTPUTS)
    failed = status["models"][1]
    assert failed == {"name": "medgemma", "error": "OutOfMemoryError: CUDA out of memory"}
    assert status["bestModel"] == "base" and status["bestBalancedAccuracy"] == 0.72


def test_an_undefined_metric_stays_absent_instead_of_zero():
    metrics = {**METRICS, "precision": None}
    status = _status(_summary(base={"metrics": metrics, "threshold": THRESHOLD}), POD_OUTPUTS)
    assert "precision" not in status["models"][0]


def test_the_evaluators_best_model_wins_a_tie():
    tied = {**METRICS, "roc_auc": 0.9}
    summary = {"models": {"base": {"metrics": METRICS, "threshold": 0.5},
                          "tuned": {"metrics": tied, "threshold": 0.5}}, "best": "tuned"}
    assert _status(summary, POD_OUTPUTS)["bestModel"] == "tuned"


def test_report_and_predictions_are_gs_uris_with_a_console_link():
    status = _status(_summary(base={"metrics": METRICS, "threshold": THRESHOLD}), POD_OUTPUTS)
    assert status["report"] == "gs://my-bucket/evaluations/melanoma/report.html"
    assert status["predictions"] == "gs://my-bucket/evaluations/melanoma/predictions.jsonl"
    assert status["outputs"]["metrics"] == "gs://my-bucket/evaluations/melanoma/metrics.json"
    assert status["consoleUrl"] == "https://console.cloud.google.com/storage/browser/my-bucket/evaluations/melanoma"


def test_uploaded_outputs_keep_their_gs_uris():
    uploaded = {key: f"gs://reports/melanoma/{path.rsplit('/', 1)[1]}" for key, path in POD_OUTPUTS.items()}
    status = _status(_summary(base={"metrics": METRICS, "threshold": THRESHOLD}), uploaded,
                     _spec(outputUri="gs://reports/melanoma"))
    assert status["report"] == "gs://reports/melanoma/report.html"
    assert status["consoleUrl"] == "https://console.cloud.google.com/storage/browser/reports/melanoma"


def test_before_results_status_names_where_the_outputs_will_be():
    observed = Observed(job=None, pods=[], report=None,
                        verdict=workload.WorkloadVerdict(phase=workload.RUNNING, reason="Running", message=""))
    status = EvaluationReconciler().extra_status(OWNER, _spec(), observed)
    assert status == {"outputs": {"report": "gs://my-bucket/evaluations/melanoma/report.html",
                                  "metrics": "gs://my-bucket/evaluations/melanoma/metrics.json",
                                  "predictions": "gs://my-bucket/evaluations/melanoma/predictions.jsonl"}}


def test_the_contract_rejects_a_metric_out_of_range():
    with pytest.raises(ValueError, match="precision"):
        EvaluationResults.model_validate({"models": {"base": {"precision": 1.5}}})


def test_unreadable_results_are_ignored_not_fatal(caplog):
    report = WorkloadReport(phase="Completed", outputs=POD_OUTPUTS,
                            results={"models": {"base": {"precision": 1.5}}})
    observed = Observed(job=None, pods=[], report=report,
                        verdict=workload.WorkloadVerdict(phase=workload.SUCCEEDED, reason="Completed", message=""))
    status = EvaluationReconciler().extra_status(OWNER, _spec(), observed)
    assert "models" not in status and status["outputs"]["report"].startswith("gs://")
    assert "ignoring unreadable evaluation results" in caplog.text
