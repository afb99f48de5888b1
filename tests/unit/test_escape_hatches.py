"""GKE's escape hatches: the builders render each one, and nothing a user adds can replace what the operator owns.

The API server's refusals (CEL rules generated from the same tables) are in the invalid corpus of
tests/integration/test_api.py (cases 36-53); here pydantic's mirror of them (what `mmft render` checks) and the
rendering. HATCH_VARIANTS lists the documents with every hatch set, for tests that create rendered pods.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from mmft_operator import gke
from mmft_operator.api.axolotl_keys import TRACKING_KEYS
from mmft_operator.api.datasetprep import DatasetPrepSpec
from mmft_operator.api.evaluation import EvaluationSpec
from mmft_operator.api.finetunejob import FineTuneJobSpec, reserved_override_keys
from mmft_operator.api.pod_hatches import (
    OPERATOR_ENV_NAMES,
    OPERATOR_ENV_PREFIX,
    OPERATOR_MOUNT_PATHS,
    OPERATOR_VOLUMES,
)
from mmft_operator.render import render_documents
from mmft_operator.settings import OperatorSettings
from pydantic import ValidationError

GOLDEN_INPUTS = Path(__file__).parent / "golden" / "inputs"
# Rendered variants with every hatch set (all three kinds; onDemand with a reservation, flexStart, spot). A test that
# creates the rendered pods under simulated Autopilot admission renders these with `render_documents(docs, ns)`.
HATCH_VARIANTS = [GOLDEN_INPUTS / "escape-hatches.yaml"]


def hatch_documents() -> list[dict[str, Any]]:
    return [doc for path in HATCH_VARIANTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    return next(d for d in hatch_documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def _render(*documents: dict[str, Any], settings: OperatorSettings | None = None) -> list[dict[str, Any]]:
    return render_documents(list(documents), "ml", settings)


def _pod(children: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    child = next(c for c in children if c["kind"] == kind and c["metadata"]["name"] == name)
    return child["spec"]["template"]["spec"]


def _ftj(**spec: Any) -> dict[str, Any]:
    document = {
        "apiVersion": "mmft.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "t"},
        "spec": {
            "baseModel": "google/gemma-3-4b-it",
            "dataset": {"trainPath": "/mnt/gcs/d/train.jsonl"},
            "training": {"maxSteps": 10},
            "bucket": {"name": "b-bucket"},
        },
    }
    document["spec"].update(spec)
    return document


# ---- rendering --------------------------------------------------------------------------------------------------


def test_finetunejob_hatches_are_added_to_what_the_operator_sets() -> None:
    children = _render(_by_kind("FineTuneJob", "hatch-train"))
    pod = _pod(children, "Job", "hatch-train-train")
    trainer = pod["containers"][0]
    assert pod["nodeSelector"] == {
        gke.ACCELERATOR_LABEL: "nvidia-h100-80gb",
        gke.RESERVATION_NAME_LABEL: "my-h100-reservation",
        gke.RESERVATION_AFFINITY_LABEL: "specific",
    }
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu", "the operator's toleration stays first"
    assert pod["tolerations"][-1] == {"key": "example.com/dedicated", "operator": "Equal", "value": "ml",
                                      "effect": "NoSchedule"}
    assert pod["priorityClassName"] == "training-high"
    zones = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert zones[0]["matchExpressions"][0]["values"] == ["us-central1-a", "us-central1-b"]
    names = [variable["name"] for variable in trainer["env"]]
    assert names.index("HTTPS_PROXY") > names.index("MMFT_REPORT_FILE"), "the user's env comes after the operator's"
    assert {"name": "DATASET_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "dataset-credentials", "key": "password"}}} in trainer["env"]
    assert trainer["envFrom"] == [{"secretRef": {"name": "extra-credentials"}, "prefix": "EXTRA_"}]
    mounts = {mount["name"]: mount for mount in trainer["volumeMounts"]}
    assert mounts["extra-bucket"] == {"name": "extra-bucket", "mountPath": "/mnt/reference", "readOnly": True}
    assert mounts["cache"] == {"name": "cache", "mountPath": "/cache"}
    assert {"config", "output", "gcs", "dshm"} <= set(mounts), "the operator's mounts stay"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["cache"] == {"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}}
    assert volumes["extra-bucket"]["csi"]["volumeAttributes"]["bucketName"] == "reference-models"


def test_tensorboard_takes_its_own_scheduling_and_none_of_the_gpu_pods() -> None:
    children = _render(_by_kind("FineTuneJob", "hatch-train"))
    pod = _pod(children, "Deployment", "hatch-train-tensorboard")
    assert pod["nodeSelector"] == {gke.COMPUTE_CLASS_LABEL: "Scale-Out"}
    assert "priorityClassName" not in pod and "affinity" not in pod and "tolerations" not in pod
    assert "envFrom" not in pod["containers"][0]
    assert {volume["name"] for volume in pod["volumes"]} == {"gcs", "tmp"}


@pytest.mark.parametrize(("kind", "name", "job"), [("DatasetPrep", "hatch-prep", "hatch-prep-dataprep"),
                                                   ("Evaluation", "hatch-eval", "hatch-eval-evaluator")])
def test_datasetprep_and_evaluation_render_their_hatches(kind: str, name: str, job: str) -> None:
    document = _by_kind(kind, name)
    pod = _pod(_render(document), "Job", job)
    container = pod["containers"][0]
    spec = document["spec"]
    for toleration in spec.get("scheduling", {}).get("tolerations", []):
        assert toleration in pod["tolerations"]
    for key, value in spec.get("scheduling", {}).get("nodeSelector", {}).items():
        assert pod["nodeSelector"][key] == value
    if "priorityClassName" in spec.get("scheduling", {}):
        assert pod["priorityClassName"] == spec["scheduling"]["priorityClassName"]
    for variable in spec.get("env", []):
        assert variable in container["env"]
    assert container.get("envFrom", []) == spec.get("envFrom", [])
    for volume in spec.get("extraVolumes", []):
        assert {"name": volume["name"], "mountPath": volume["mountPath"],
                **({"readOnly": True} if volume.get("readOnly") else {})} in container["volumeMounts"]
        assert volume["name"] in {v["name"] for v in pod["volumes"]}


def test_without_hatches_nothing_is_added() -> None:
    pod = _pod(_render(_ftj()), "Job", "t-train")
    assert "priorityClassName" not in pod and "affinity" not in pod and "envFrom" not in pod["containers"][0]
    assert {volume["name"] for volume in pod["volumes"]} == {"config", "output", "gcs", "dshm"}


# ---- provisioning -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compute", "selector", "toleration", "grace"),
    [
        ({}, None, None, 120),
        ({"provisioning": "onDemand"}, None, None, 120),
        ({"provisioning": "spot"}, gke.SPOT_LABEL, gke.SPOT_LABEL, gke.SPOT_GRACE_SECONDS),
        ({"spot": True}, gke.SPOT_LABEL, gke.SPOT_LABEL, gke.SPOT_GRACE_SECONDS),
        ({"spot": False, "provisioning": "flexStart"}, gke.FLEX_START_LABEL, gke.FLEX_START_LABEL, 120),
    ],
)
def test_provisioning_selects_gke_capacity(compute: dict, selector: str | None, toleration: str | None,
                                           grace: int) -> None:
    pod = _pod(_render(_ftj(compute=compute)), "Job", "t-train")
    provisioning_keys = {gke.SPOT_LABEL, gke.FLEX_START_LABEL}
    assert {k for k in pod["nodeSelector"] if k in provisioning_keys} == ({selector} if selector else set())
    if selector:
        assert pod["nodeSelector"][selector] == "true"
    assert {t["key"] for t in pod["tolerations"] if t["key"] in provisioning_keys} == (
        {toleration} if toleration else set()
    )
    assert pod["terminationGracePeriodSeconds"] == grace


def test_the_deprecated_spot_switch_renders_exactly_like_provisioning_spot() -> None:
    assert _render(_ftj(compute={"spot": True})) == _render(_ftj(compute={"provisioning": "spot"}))


def test_evaluation_on_spot_and_flex_start() -> None:
    evaluation = _by_kind("Evaluation")
    for provisioning, label in (("spot", gke.SPOT_LABEL), ("flexStart", gke.FLEX_START_LABEL)):
        document = copy.deepcopy(evaluation)
        document["spec"]["compute"]["provisioning"] = provisioning
        pod = _pod(_render(document), "Job", "hatch-eval-evaluator")
        assert pod["nodeSelector"][label] == "true"


def test_datasetprep_may_run_on_spot_but_not_flex_start() -> None:
    document = _by_kind("DatasetPrep")
    pod = _pod(_render(document), "Job", "hatch-prep-dataprep")
    assert pod["nodeSelector"][gke.SPOT_LABEL] == "true" and gke.ACCELERATOR_LABEL not in pod["nodeSelector"]
    assert [t["key"] for t in pod["tolerations"]] == [gke.SPOT_LABEL], "no GPU toleration on a CPU pod"
    on_demand = copy.deepcopy(document)
    del on_demand["spec"]["resources"]
    pod = _pod(_render(on_demand), "Job", "hatch-prep-dataprep")
    assert gke.SPOT_LABEL not in pod["nodeSelector"] and "tolerations" not in pod
    with pytest.raises(ValidationError, match="provisioning"):
        DatasetPrepSpec.model_validate({**document["spec"], "resources": {"provisioning": "flexStart"}})


def test_flex_start_fits_seven_days_and_needs_a_gpu() -> None:
    base = _ftj()["spec"]
    FineTuneJobSpec.model_validate({**base, "compute": {"provisioning": "flexStart"},
                                    "activeDeadlineSeconds": gke.FLEX_START_MAX_RUN_SECONDS})
    with pytest.raises(ValidationError, match="flexStart runs at most 604800 s"):
        FineTuneJobSpec.model_validate({**base, "compute": {"provisioning": "flexStart"},
                                        "activeDeadlineSeconds": gke.FLEX_START_MAX_RUN_SECONDS + 1})
    with pytest.raises(ValidationError, match="flexStart obtains GPUs: gpusPerNode 0"):
        FineTuneJobSpec.model_validate({**base, "compute": {"provisioning": "flexStart", "gpusPerNode": 0,
                                                            "cpu": "4", "memory": "16Gi"}})
    with pytest.raises(ValidationError, match="spot is deprecated"):
        FineTuneJobSpec.model_validate({**base, "compute": {"spot": True, "provisioning": "onDemand"}})


# ---- tracking ---------------------------------------------------------------------------------------------------


def _axolotl_config(children: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = next(c for c in children if c["kind"] == "ConfigMap" and "axolotl.yaml" in c.get("data", {}))
    return yaml.safe_load(config_map["data"]["axolotl.yaml"])


def test_tracking_settings_reach_axolotl_and_credentials_only_the_environment() -> None:
    document = _by_kind("FineTuneJob", "hatch-train")
    children = _render(document)
    config = _axolotl_config(children)
    assert config["use_wandb"] is True and config["use_mlflow"] is True
    assert config["wandb_project"] == "melanoma" and config["wandb_entity"] == "my-team"
    assert config["wandb_name"] == "hatch-train", "an empty run name takes the FineTuneJob's name"
    assert config["mlflow_tracking_uri"] == "https://mlflow.example.com"
    assert config["mlflow_experiment_name"] == "melanoma" and config["mlflow_run_name"] == "hatch-train-1"
    env = {v["name"]: v for v in _pod(children, "Job", "hatch-train-train")["containers"][0]["env"]}
    assert env["WANDB_API_KEY"] == {"name": "WANDB_API_KEY",
                                    "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow", "key": "token"}
    # Nothing that names a credential lands in a ConfigMap.
    for child in children:
        if child["kind"] == "ConfigMap":
            text = yaml.safe_dump(child.get("data", {})).lower()
            assert "api_key" not in text and "token" not in text and "wandb\n" not in text


@pytest.mark.ml
def test_tracking_keys_are_axolotls_own() -> None:
    from axolotl.utils.schemas.integrations import MLFlowConfig, WandbConfig

    axolotl_keys = set(WandbConfig.model_fields) | set(MLFlowConfig.model_fields)
    assert {typed.key for typed in TRACKING_KEYS} | {"use_wandb", "use_mlflow"} <= axolotl_keys


def test_tracking_keys_are_refused_as_overrides_pointing_at_their_fields() -> None:
    reserved = reserved_override_keys()
    assert reserved["wandb_project"][1] == "spec.tracking.wandb.project"
    assert reserved["mlflow_run_name"][1] == "spec.tracking.mlflow.runName"
    assert {"use_wandb", "use_mlflow", "wandb_api_key"} <= set(reserved)


def test_mlflow_basic_auth_needs_both_secrets_and_tracking_needs_a_backend() -> None:
    base = _ftj()["spec"]
    with pytest.raises(ValidationError, match="usernameSecretRef and passwordSecretRef go together"):
        FineTuneJobSpec.model_validate({**base, "tracking": {"mlflow": {
            "trackingUri": "https://m", "experimentName": "e", "usernameSecretRef": {"name": "u"}}}})
    with pytest.raises(ValidationError, match="tracking needs wandb or mlflow"):
        FineTuneJobSpec.model_validate({**base, "tracking": {}})
    with pytest.raises(ValidationError, match="apiKey"):
        FineTuneJobSpec.model_validate({**base, "tracking": {"wandb": {"project": "p", "apiKey": "inline"}}})


def test_trainer_preflight_names_a_tracker_whose_package_the_image_lacks() -> None:
    from mmft_trainer.config_rules import missing_tracker_packages

    config = _axolotl_config(_render(_by_kind("FineTuneJob", "hatch-train")))
    assert missing_tracker_packages(config, lambda package: True) == []
    findings = missing_tracker_packages(config, lambda package: package == "wandb")
    assert [finding.field for finding in findings] == ["use_mlflow"]
    assert "mlflow Python package" in findings[0].message


# ---- the operator's own names, refused ---------------------------------------------------------------------------


REFUSED = [
    ({"scheduling": {"nodeSelector": {gke.ACCELERATOR_LABEL: "nvidia-l4"}}}, "set spec.compute.accelerator instead"),
    ({"scheduling": {"nodeSelector": {gke.SPOT_LABEL: "true"}}}, "set spec.compute.provisioning instead"),
    ({"scheduling": {"nodeSelector": {gke.PREEMPTIBLE_LABEL: "true"}}}, "set spec.compute.provisioning instead"),
    ({"scheduling": {"priorityClassName": "system-cluster-critical"}}, "reserved for kube-system"),
    ({"env": [{"name": "MMFT_ANYTHING", "value": "x"}]}, "names starting with MMFT_ are the operator's"),
    ({"env": [{"name": "HF_TOKEN", "value": "x"}]}, "HF_TOKEN is set by spec.huggingFaceTokenSecretRef"),
    ({"env": [{"name": "WANDB_API_KEY", "value": "x"}]}, "set by spec.tracking.wandb.apiKeySecretRef"),
    ({"env": [{"name": "X", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
     "exactly one of value or valueFrom"),
    ({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}, "fieldRef"),
    ({"envFrom": [{"secretRef": {"name": "s"}, "prefix": "MMFT_"}]}, "prefix MMFT_ is the operator's"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}, "env names must be unique"),
    ({"extraVolumes": [{"name": "h", "mountPath": "/h", "hostPath": {"path": "/var"}}]},
     "hostPath volumes are refused: GKE Autopilot does not allow them"),
    ({"extraVolumes": [{"name": "output", "mountPath": "/data", "emptyDir": {}}]}, "the name is the operator's"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/etc", "emptyDir": {}}]}, "overlaps /etc/mmft"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/scratch/mine", "emptyDir": {}}]}, "overlaps /scratch"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/mnt/gcs/sub", "emptyDir": {}}]}, "overlaps spec.bucket"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/a/../outputs", "emptyDir": {}}]}, ". or .. segments"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/a", "emptyDir": {}, "secret": {"secretName": "s"}}]},
     "exactly one volume source"),
    ({"extraVolumes": [{"name": "x", "mountPath": "/a", "emptyDir": {}},
                       {"name": "y", "mountPath": "/a", "emptyDir": {}}]}, "mount paths must be unique"),
]


@pytest.mark.parametrize(("hatch", "message"), REFUSED, ids=[message for _hatch, message in REFUSED])
@pytest.mark.parametrize("kind", ["FineTuneJob", "DatasetPrep", "Evaluation"])
def test_pydantic_refuses_what_the_operator_owns(kind: str, hatch: dict, message: str) -> None:
    model = {"FineTuneJob": FineTuneJobSpec, "DatasetPrep": DatasetPrepSpec, "Evaluation": EvaluationSpec}[kind]
    spec = {**_by_kind(kind)["spec"], **hatch}
    with pytest.raises(ValidationError, match=message.replace(".", r"\.").replace("*", r"\*")):
        model.model_validate(spec)


# The invalid corpus's hatch cases (tests/integration/invalid, refused there by the real API server).
HATCH_CASES = sorted(
    path for path in (Path(__file__).parents[1] / "integration" / "invalid").glob("*.yaml")
    if 36 <= int(path.name.split("-", 1)[0]) <= 53
)


@pytest.mark.parametrize("path", HATCH_CASES, ids=lambda path: path.stem)
def test_mmft_render_refuses_what_the_api_server_refuses(path: Path) -> None:
    assert len(HATCH_CASES) == 18
    with pytest.raises(ValidationError):
        _render(yaml.safe_load(path.read_text()))


def test_the_hatch_variants_themselves_are_valid() -> None:
    models = {"FineTuneJob": FineTuneJobSpec, "DatasetPrep": DatasetPrepSpec, "Evaluation": EvaluationSpec}
    for document in hatch_documents():
        models[document["kind"]].model_validate(document["spec"])


def _every_feature() -> list[dict[str, Any]]:
    """Documents that make the builders set every env variable, volume and mount they can."""
    train = copy.deepcopy(_by_kind("FineTuneJob", "hatch-train"))
    train["spec"]["huggingFaceTokenSecretRef"] = {"name": "hf"}
    train["spec"]["tracking"]["wandb"]["baseUrl"] = "https://wandb.example.com"
    train["spec"]["tracking"]["mlflow"].update(usernameSecretRef={"name": "u"}, passwordSecretRef={"name": "p"})
    evaluation = copy.deepcopy(_by_kind("Evaluation"))
    evaluation["spec"]["huggingFaceTokenSecretRef"] = {"name": "hf"}
    evaluation["spec"]["scoring"] = {"compileCachePath": "cache/inductor"}
    return [train, evaluation, _by_kind("DatasetPrep")]


def test_every_name_and_path_the_builders_set_is_reserved() -> None:
    """The reserved tables hold everything the operator renders into workload pods: a builder that adds a variable,
    volume or mount path must reserve it, or a user could replace it."""
    settings = OperatorSettings(storage_emulator_host="gcs:4443")
    users = {"HTTPS_PROXY", "DATASET_PASSWORD", "TOKENIZERS_PARALLELISM", "EVAL_NOTE"}
    user_volumes = {"extra-bucket", "cache", "extra-models", "ca-bundle"}
    for child in _render(*_every_feature(), settings=settings):
        if child["kind"] != "Job":
            continue
        pod = child["spec"]["template"]["spec"]
        bucket_mounts = {v["name"] for v in pod["volumes"] if v["name"] == "gcs"}
        for container in pod["containers"]:
            for variable in container["env"]:
                name = variable["name"]
                assert name in users or name in OPERATOR_ENV_NAMES or name.startswith(OPERATOR_ENV_PREFIX), name
            for mount in container["volumeMounts"]:
                if mount["name"] in user_volumes or mount["name"] in bucket_mounts:
                    continue
                assert mount["mountPath"] in OPERATOR_MOUNT_PATHS, mount
        for volume in pod["volumes"]:
            assert volume["name"] in user_volumes or volume["name"] in OPERATOR_VOLUMES, volume["name"]
