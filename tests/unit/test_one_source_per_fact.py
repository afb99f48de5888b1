"""One source per fact: each fact below is declared once, and every part that needs it reads it from there.

A second copy would drift: a card the API offers that the local cluster cannot schedule, a prompt the evaluator
asks differently from how the model was trained, a model location one side writes and the other cannot parse.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest
from mmft_localcluster import gke_nodes
from mmft_operator.accelerators import DEFAULT_ACCELERATOR, PROFILES
from mmft_operator.api.common import Accelerator

ROOT = Path(__file__).resolve().parents[2]
# The code users run (tests, samples and benchmarks name the cards they run on; that is a use, not a copy).
SOURCE_DIRS = ("operator", "trainer", "evaluator", "dataprep", "localcluster")


def source_files() -> list[Path]:
    return sorted(path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))


def files_with_literal(literal: str) -> list[str]:
    pattern = re.compile(rf"[\"']{re.escape(literal)}[\"']")
    return [str(path.relative_to(ROOT)) for path in source_files() if pattern.search(path.read_text())]


# ---- the accelerator table -------------------------------------------------------------------------------------


def test_the_local_cluster_simulates_a_node_for_every_accelerator_of_the_api():
    simulated = {
        node["metadata"]["labels"]["cloud.google.com/gke-accelerator"]
        for node in gke_nodes.default_nodes()
        if "cloud.google.com/gke-accelerator" in node["metadata"]["labels"]
    }
    assert simulated == set(get_args(Accelerator)) == set(PROFILES)


@pytest.mark.parametrize("accelerator", sorted(PROFILES))
def test_each_simulated_node_is_the_machine_of_the_table_and_holds_a_full_pod(accelerator):
    card = PROFILES[accelerator]
    node = gke_nodes.gpu_nodes(accelerator, 1)[0]
    labels, capacity = node["metadata"]["labels"], node["status"]["capacity"]
    assert labels["node.kubernetes.io/instance-type"] == card.machine_type
    assert labels["cloud.google.com/machine-family"] == card.machine_family
    assert capacity["nvidia.com/gpu"] == str(card.machine_gpus) == labels["cloud.google.com/gke-accelerator-count"]
    # A pod of every GPU of the machine, sized by the per-GPU requests the builders use, must fit the node.
    assert card.cpu_per_gpu * card.machine_gpus <= int(capacity["cpu"])
    assert card.memory_gib_per_gpu * card.machine_gpus <= int(capacity["memory"].removesuffix("Gi"))
    assert card.ephemeral_storage_gib * card.machine_gpus <= int(capacity["ephemeral-storage"].removesuffix("Gi"))


def test_the_default_accelerator_is_one_of_the_table_and_the_api_uses_it():
    from mmft_operator.api.evaluation import EvaluationCompute
    from mmft_operator.api.finetunejob import ComputeSettings

    assert DEFAULT_ACCELERATOR in PROFILES
    assert ComputeSettings().accelerator == EvaluationCompute().accelerator == DEFAULT_ACCELERATOR


@pytest.mark.parametrize("fact", sorted({*PROFILES, *(card.machine_type for card in PROFILES.values())}))
def test_no_second_copy_of_an_accelerator_or_machine_type(fact):
    assert files_with_literal(fact) in ([], ["operator/mmft_operator/accelerators.py"])
