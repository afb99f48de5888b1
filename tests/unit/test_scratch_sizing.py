"""A pod that downloads models onto its own disk asks for enough of it.

On Autopilot a pod's ephemeral-storage request is also its limit: a pod that writes more is evicted. A multi-node
FineTuneJob has no output claim, so each rank downloads the base model onto its scratch emptyDir; the card's 10Gi
default evicted every rank of a 12B or 27B run. (The Evaluation's disk: tests/unit/test_plan_evaluation.py.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from mmft_operator.accelerators import profile
from mmft_operator.builders.common import SCRATCH_HEADROOM_GIB
from mmft_operator.render import render_documents
from mmft_operator.training_defaults import MODEL_SHAPES

MULTINODE = Path(__file__).parent / "golden/inputs/finetunejob-multinode.yaml"
GB = 10**9
GIB = 2**30


@pytest.mark.parametrize(
    ("size", "published_gb"),
    # The checkpoints' bf16 safetensors on the Hub (google/gemma-3-{4b,12b,27b}-it), rounded to 0.1 GB.
    [("4B", 8.6), ("12B", 24.4), ("27B", 54.9)],
)
def test_the_modelled_download_matches_the_published_checkpoint(size: str, published_gb: float) -> None:
    assert MODEL_SHAPES[size].download_gib * GIB / GB == pytest.approx(published_gb, rel=0.02)


def _trainer_pod(spec_changes: dict) -> dict:
    document = yaml.safe_load(MULTINODE.read_text())
    document["spec"].update(spec_changes)
    job = next(child for child in render_documents([document], "default") if child["kind"] == "Job")
    return job["spec"]["template"]["spec"]


def _volumes(pod: dict) -> dict[str, dict]:
    return {volume["name"]: volume for volume in pod["volumes"]}


@pytest.mark.parametrize("size", ["4B", "12B", "27B"])
def test_each_rank_of_a_multinode_run_has_disk_for_its_base_model(size: str) -> None:
    pod = _trainer_pod({"baseModel": "google/gemma-3-27b-it", "baseModelSize": size})
    wanted = max(profile("nvidia-h100-80gb").ephemeral_storage_gib,
                 math.ceil(MODEL_SHAPES[size].download_gib) + SCRATCH_HEADROOM_GIB)
    trainer = pod["containers"][0]
    assert trainer["resources"]["requests"]["ephemeral-storage"] == f"{wanted}Gi"
    assert _volumes(pod)["scratch"]["emptyDir"]["sizeLimit"] == f"{wanted}Gi"
    assert wanted > MODEL_SHAPES[size].download_gib + 1  # the download fits with room to spare
    env = {item["name"]: item.get("value") for item in trainer["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in trainer["volumeMounts"]}
    assert env["HF_HOME"].startswith(mounts["scratch"] + "/")  # the download lands on that volume


def test_a_single_node_run_downloads_onto_its_claim_and_keeps_the_cards_default() -> None:
    pod = _trainer_pod({"compute": {"accelerator": "nvidia-h100-80gb", "gpusPerNode": 8, "nodes": 1}})
    trainer = pod["containers"][0]
    card = profile("nvidia-h100-80gb")
    assert trainer["resources"]["requests"]["ephemeral-storage"] == f"{card.ephemeral_storage_gib}Gi"
    env = {item["name"]: item.get("value") for item in trainer["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in trainer["volumeMounts"]}
    assert "persistentVolumeClaim" in _volumes(pod)["output"]
    assert env["HF_HOME"].startswith(mounts["output"] + "/")


def test_the_users_ephemeral_storage_is_kept() -> None:
    compute = {"accelerator": "nvidia-h100-80gb", "gpusPerNode": 8, "nodes": 2, "ephemeralStorage": "200Gi"}
    pod = _trainer_pod({"compute": compute})
    assert pod["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "200Gi"
    assert _volumes(pod)["scratch"]["emptyDir"]["sizeLimit"] == "200Gi"
