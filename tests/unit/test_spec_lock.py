"""When the spec locks (the CRDs' CEL rules) and which waiting Job a spec change replaces (reconcile/waiting_job.py),
for every kind. The API server's side is tested in tests/integration/test_api.py and test_lifecycle_lock.py."""

from __future__ import annotations

import copy

import pytest
from mmft_operator.api.crdgen import all_crds
from mmft_operator.api.kinds import ALL_KINDS, BY_KIND
from mmft_operator.reconcile import waiting_job
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.engine import Reference
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from planner_world import run, sample, succeeded

PREP_OUTPUTS = {"trainJsonl": "/mnt/gcs/prepared/isic2020/train.jsonl",
                "validationJsonl": "/mnt/gcs/prepared/isic2020/validation.jsonl",
                "testJsonl": "/mnt/gcs/prepared/isic2020/test.jsonl"}
READY = {
    Reference("DatasetPrep", "isic2020"): succeeded(sample("datasetprep.yaml"), PREP_OUTPUTS),
    Reference("FineTuneJob", "gemma3-melanoma"): succeeded(
        sample("finetunejob.yaml"), {"adapterUri": "gs://my-mmft-bucket/tuned-models/gemma3-melanoma/adapter"}),
}
KINDS = {
    "DatasetPrep": (DatasetPrepReconciler(), "datasetprep.yaml"),
    "FineTuneJob": (FineTuneJobReconciler(), "finetunejob.yaml"),
    "Evaluation": (EvaluationReconciler(), "evaluation.yaml"),
}
# A change of a field that may change while the Job waits, per kind.
WHILE_WAITING = {
    "DatasetPrep": ("images", {"size": 256}),
    "FineTuneJob": ("compute", {"accelerator": "nvidia-l4", "gpusPerNode": 1}),
    "Evaluation": ("compute", {"accelerator": "nvidia-l4", "gpus": 1}),
}


def _rules(kind: str) -> dict[str, dict]:
    crd = all_crds()[f"mmft.io_{BY_KIND[kind].plural}.yaml"]
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    return {rule["fieldPath"]: rule for rule in rules if "fieldPath" in rule}


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda info: info.kind)
def test_every_locked_field_is_a_spec_field_in_exactly_one_tier(info) -> None:
    spec_fields = set(info.spec_model.model_json_schema(by_alias=True)["properties"])
    run_tier, job_tier = set(info.immutable_after_start), set(info.immutable_once_job_exists)
    assert not run_tier & job_tier
    assert run_tier | job_tier <= spec_fields
    rules = _rules(info.kind)
    for field in run_tier:
        assert "!has(oldSelf.status.runStartedTime)" in rules[f".spec.{field}"]["rule"]
    for field in job_tier:
        assert "!has(oldSelf.status.startTime)" in rules[f".spec.{field}"]["rule"]


@pytest.mark.parametrize("kind", ["FineTuneJob", "Evaluation"])
def test_compute_may_change_until_the_first_pod_runs_and_the_refusal_says_so(kind) -> None:
    assert "compute" in BY_KIND[kind].immutable_after_start
    message = _rules(kind)[".spec.compute"]["message"]
    assert message.startswith("spec.compute is immutable once the run's first pod started (status.runStartedTime)")
    assert f"create a new {kind} with another name" in message


def _waiting_job(kind: str) -> tuple[dict, dict]:
    """The kind's sample with its first Job created and observed (a UID, no pod yet)."""
    reconciler, sample_file = KINDS[kind]
    body = sample(sample_file)
    first = run(reconciler, body, referenced=READY)
    created = next(child for child in first.children.ensure if child["kind"] == "Job")
    observed = copy.deepcopy(created)
    observed["metadata"]["uid"] = "job-uid-1"
    observed["status"] = {"startTime": "2026-12-01T11:00:05Z"}
    return {**body, "status": first.status.status}, observed


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_unchanged_spec_never_replaces_the_waiting_job_and_a_changed_one_does(kind) -> None:
    reconciler, _ = KINDS[kind]
    body, observed = _waiting_job(kind)
    assert run(reconciler, body, observed_job=observed).children.replace_job is None
    field, change = WHILE_WAITING[kind]
    changed = copy.deepcopy(body)
    changed["spec"][field] = {**changed["spec"].get(field, {}), **change}
    replaced = run(reconciler, changed, observed_job=observed)
    assert replaced.children.replace_job is not None and replaced.children.replace_job.job is observed


def test_a_training_change_while_waiting_replaces_the_job_through_the_config_hash() -> None:
    """The Axolotl config is a ConfigMap the Job mounts: its hash is in the pod template, so a waiting pod never
    starts with the config of before."""
    body, observed = _waiting_job("FineTuneJob")
    changed = copy.deepcopy(body)
    changed["spec"]["training"] = {**changed["spec"]["training"], "learningRate": 0.0001}
    outcome = run(KINDS["FineTuneJob"][0], changed, observed_job=observed)
    assert outcome.children.replace_job is not None
    assert "ConfigMap/gemma3-melanoma-axolotl" in outcome.created


def test_the_change_names_what_a_user_changed() -> None:
    body, observed = _waiting_job("FineTuneJob")
    changed = copy.deepcopy(body)
    changed["spec"]["compute"] = {**changed["spec"]["compute"], "accelerator": "nvidia-h100-80gb", "gpusPerNode": 2,
                                  "spot": True}
    desired = run(KINDS["FineTuneJob"][0], changed, observed_job=observed).children.replace_job.desired
    assert waiting_job.describe_change(observed, desired) == (
        "accelerator nvidia-tesla-a100 -> nvidia-h100-80gb, GPUs per pod 1 -> 2, spot false -> true"
    )
    # The watch cache keeps no pod template; without the Job as the API returns it, the change is named generally.
    assert waiting_job.describe_change(None, desired) == "its spec changed"


def test_pods_of_another_job_of_the_same_name_are_not_this_jobs() -> None:
    job = {"metadata": {"uid": "new"}}
    old_pod = {"metadata": {"ownerReferences": [{"uid": "old", "controller": True}]},
               "status": {"phase": "Running", "startTime": "2026-12-01T11:00:06Z"}}
    new_pod = {"metadata": {"ownerReferences": [{"uid": "new", "controller": True}]}, "status": {"phase": "Pending"}}
    assert waiting_job.pods_of(job, [old_pod, new_pod]) == [new_pod]
    assert not waiting_job.has_run(job, [old_pod, new_pod])
    assert waiting_job.has_run({"metadata": {"uid": "old"}}, [old_pod, new_pod])
