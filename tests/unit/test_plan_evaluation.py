"""The planner for an Evaluation, observed world -> plan: it waits for its dataset and for every FineTuneJob it
compares, then scores all models in one Job (tests/integration/test_operator.py's sample chain and failures)."""

from __future__ import annotations

import json
import math

import pytest
from mmft_operator.builders.common import SCRATCH_HEADROOM_GIB
from mmft_operator.builders.evaluation import MIN_EPHEMERAL_STORAGE_GIB, default_ephemeral_storage_gib
from mmft_operator.reconcile.engine import Reference
from mmft_operator.reconcile.evaluation import EvaluationReconciler, resolved_model
from mmft_operator.training_defaults import MODEL_SHAPES
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


def _ephemeral_storage(outcome) -> str:  # noqa: ANN001
    job = outcome.children.ensure[-1]
    return job["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"]


def test_the_pods_disk_holds_every_model_it_downloads_once() -> None:
    """/scratch/models holds each download (a base shared by base and BASE+ADAPTER once); on Autopilot the request
    is the pod's limit, so a 27B comparison on the default 50Gi would be evicted mid-download."""
    seed = run(EVAL, sample("evaluation.yaml"), referenced={DATASET: PREP_READY, TUNED: TUNED_READY})
    assert _ephemeral_storage(seed) == "50Gi"  # two 4B downloads (8 GiB each) and the headroom stay under the floor
    assert seed.status.status["resolved"]["modelSize.tuned"] == "4B"

    large_tuned = succeeded(sample("finetunejob.yaml", baseModel="google/gemma-3-27b-it"), {"adapterUri": ADAPTER})
    body = sample("evaluation.yaml")
    body["spec"]["models"][0]["huggingFace"] = "google/gemma-3-27b-it"
    body["spec"]["models"][2]["huggingFace"] = "google/medgemma-27b-it"
    large = run(EVAL, body, referenced={DATASET: PREP_READY, TUNED: large_tuned})
    shape = MODEL_SHAPES["27B"]
    assert large.status.status["resolved"]["modelSize.tuned"] == "27B"
    # gemma-3-27b-it once (base, and the tuned adapter's base), medgemma-27b-it once, and the headroom.
    assert _ephemeral_storage(large) == f"{math.ceil(2 * shape.download_gib) + SCRATCH_HEADROOM_GIB}Gi"


def test_a_merged_export_is_sized_by_its_finetunejobs_base_model() -> None:
    body = sample("evaluation.yaml", models=[{"name": "tuned", "fineTuneJobRef": {"name": "gemma3-melanoma",
                                                                                 "use": "merged"}}])
    merged = "gs://my-mmft-bucket/tuned-models/gemma3-melanoma/merged"
    tuned = succeeded(sample("finetunejob.yaml", baseModel="org/custom-vlm", baseModelSize="12B"),
                      {"mergedUri": merged})
    outcome = run(EVAL, body, referenced={DATASET: PREP_READY, TUNED: tuned})
    assert outcome.status.status["resolved"]["modelSize.tuned"] == "12B"
    assert _ephemeral_storage(outcome) == "50Gi"  # 23 GiB + headroom: under the floor
    status = {**outcome.status.status, "resolved": {"model.tuned": merged}}  # written by an earlier operator
    assert resolved_model("tuned", status["resolved"]).shape == MODEL_SHAPES["4B"]  # read from the name "merged"


def test_a_model_read_from_a_mounted_path_takes_no_disk() -> None:
    body = sample("evaluation.yaml", dataset={"testPath": "/mnt/gcs/data/test.jsonl"},
                  models=[{"name": "base", "huggingFace": "google/gemma-3-27b-it"}])
    resolved = {"model.base": "/mnt/gcs/models/gemma-3-27b-it", "modelSize.base": "27B"}
    assert default_ephemeral_storage_gib([resolved_model("base", resolved)]) == MIN_EPHEMERAL_STORAGE_GIB
    downloaded = run(EVAL, body)
    assert _ephemeral_storage(downloaded) == f"{math.ceil(MODEL_SHAPES['27B'].download_gib) + SCRATCH_HEADROOM_GIB}Gi"
