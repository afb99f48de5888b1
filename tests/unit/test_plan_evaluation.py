"""The planner for an Evaluation, observed world -> plan: it waits for its dataset and for every FineTuneJob it
compares, then scores all models in one Job (tests/integration/test_operator.py's sample chain and failures)."""

from __future__ import annotations

import json

import pytest
from mmft_operator.reconcile.engine import Reference
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from planner_world import run, sample, succeeded

EVAL = EvaluationReconciler()
DATASET = Reference("DatasetPrep", "isic2020")
TUNED = Reference("FineTuneJob", "gemma3-melanoma")
PREP_OUTPUTS = {"trainJsonl": "/mnt/gcs/prepared/isic2020/train.jsonl",
                "validationJsonl": "/mnt/gcs/prepared/isic2020/validation.jsonl",
                "testJsonl": "/mnt/gcs/prepared/isic2020/test.jsonl"}
ADAPTER = "gs://my-mmft-bucket/tuned-models/gemma3-melanoma/adapter"
PREP_READY = succeeded(sample("datasetprep.yaml"), PREP_OUTPUTS)
TUNED_READY = succeeded(sample("finetunejob.yaml"), {"adapterUri": ADAPTER})


def test_the_references_are_the_dataset_and_every_finetunejob_compared() -> None:
    outcome = run(EVAL, sample("evaluation.yaml"), referenced={DATASET: PREP_READY, TUNED: TUNED_READY})
    assert outcome.references == [DATASET, TUNED]


def test_with_everything_ready_one_job_scores_every_model_on_the_test_split() -> None:
    outcome = run(EVAL, sample("evaluation.yaml"), referenced={DATASET: PREP_READY, TUNED: TUNED_READY})
    assert outcome.created == ["ConfigMap/gemma3-melanoma-evaluation-report",
                               "Role/gemma3-melanoma-evaluation-report-writer",
                               "RoleBinding/gemma3-melanoma-evaluation-report-writer", "Job/gemma3-melanoma-evaluator"]
    assert ADAPTER in json.dumps(outcome.children.ensure[-1]["spec"])
    resolved = outcome.status.status["resolved"]
    assert resolved["model.tuned"] == f"google/gemma-3-4b-it+{ADAPTER}"  # BASE+ADAPTER
    assert resolved["model.base"] == "google/gemma-3-4b-it"
    assert resolved["testJsonl"] == PREP_OUTPUTS["testJsonl"]
    assert outcome.condition("ModelsReady")["message"] == "3 model(s) resolved"
    assert (outcome.status.status["phase"], outcome.status.status["reason"]) == ("Pending", "Starting")


@pytest.mark.parametrize(
    ("tuned", "reason", "stalled", "says"),
    [
        (None, "WaitingForModels", False, "FineTuneJob gemma3-melanoma does not exist yet"),
        (succeeded(sample("finetunejob.yaml"), {}, phase="Running"), "WaitingForModels", False,
         "FineTuneJob gemma3-melanoma is Running"),
        (succeeded(sample("finetunejob.yaml"), {}, phase="Failed", reason="OutOfMemory"), "ModelFailed", True,
         "FineTuneJob gemma3-melanoma failed (OutOfMemory)"),
        (succeeded(sample("finetunejob.yaml"), {}), "ModelNotExported", True, "has no adapter export"),
    ],
    ids=["missing", "running", "failed", "not-exported"],
)
def test_it_waits_for_the_finetunejobs_it_compares(tuned, reason, stalled, says) -> None:
    outcome = run(EVAL, sample("evaluation.yaml"), referenced={DATASET: PREP_READY, TUNED: tuned})
    assert outcome.children.ensure == []
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", reason)
    assert says in outcome.condition("ModelsReady")["message"]
    assert outcome.condition("Stalled")["status"] == str(stalled)
    assert outcome.condition("DatasetReady")["status"] == "True"


def test_a_merged_model_is_scored_from_its_merged_export() -> None:
    body = sample("evaluation.yaml")
    body["spec"]["models"][1]["fineTuneJobRef"]["use"] = "merged"
    merged = "gs://my-mmft-bucket/tuned-models/gemma3-melanoma/merged"
    both = succeeded(sample("finetunejob.yaml"), {"adapterUri": ADAPTER, "mergedUri": merged})
    outcome = run(EVAL, body, referenced={DATASET: PREP_READY, TUNED: both})
    assert outcome.status.status["resolved"]["model.tuned"] == merged
    adapter_only = run(EVAL, body, referenced={DATASET: PREP_READY, TUNED: TUNED_READY})
    assert adapter_only.status.status["reason"] == "ModelNotExported"


def test_the_dataset_is_waited_for_first() -> None:
    waiting = succeeded(sample("datasetprep.yaml"), {}, phase="Running")
    outcome = run(EVAL, sample("evaluation.yaml"), referenced={DATASET: waiting, TUNED: TUNED_READY})
    assert outcome.status.status["reason"] == "WaitingForDataset"
    assert outcome.condition("ModelsReady")["status"] == "True"


def test_direct_paths_and_hugging_face_models_need_no_reference() -> None:
    body = sample("evaluation.yaml", dataset={"testPath": "/mnt/gcs/data/test.jsonl"},
                  models=[{"name": "base", "huggingFace": "google/gemma-3-4b-it"}])
    outcome = run(EVAL, body)
    assert outcome.references == []
    assert outcome.condition("DatasetReady")["reason"] == "PathGiven"
    assert outcome.status.status["resolved"]["testJsonl"] == "/mnt/gcs/data/test.jsonl"
