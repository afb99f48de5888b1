"""One source per fact: each fact below is declared once, and every part that needs it reads it from there.

A second copy would drift: a card the API offers that the local cluster cannot schedule, a prompt the evaluator
asks differently from how the model was trained, a model location one side writes and the other cannot parse.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import get_args

import pytest
from mmft_localcluster import gke_nodes
from mmft_operator.accelerators import DEFAULT_ACCELERATOR, PROFILES
from mmft_operator.api.axolotl_keys import TYPED_KEYS
from mmft_operator.api.common import Accelerator
from mmft_operator.model_location import ModelLocationError, format_location, parse_location
from mmft_operator.seed_prompts import SEED_PROMPTS, PromptSet
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
# The code users run (tests, samples and benchmarks name the cards they run on; that is a use, not a copy).
SOURCE_DIRS = ("operator", "trainer", "evaluator", "dataprep", "localcluster")


def string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)
            and isinstance(node.value, str)}


def files_with_literal(literal: str, folders: tuple[str, ...] = SOURCE_DIRS) -> list[str]:
    """The Python files under ``folders`` with a string constant that is ``literal`` (not one that mentions it)."""
    files = sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))
    return [str(path.relative_to(ROOT)) for path in files if literal in string_constants(path)]


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


# ---- the seed's prompt set -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", list(dataclasses.astuple(SEED_PROMPTS)))
def test_no_second_copy_of_a_seed_prompt(text):
    # Tests may spell a variant to check it; the tests' tiny model and the benchmarks take the set from its module.
    assert files_with_literal(text, (*SOURCE_DIRS, "bench")) in (
        [], ["operator/mmft_operator/seed_prompts.py"]
    )


def test_the_api_and_every_workload_default_to_the_one_prompt_set():
    from mmft_dataprep import cli as dataprep_cli
    from mmft_dataprep.options import PrepOptions
    from mmft_evaluator import cli_evaluate
    from mmft_evaluator.evaluation import EvaluateOptions
    from mmft_operator.api.datasetprep import PromptTemplates
    from mmft_operator.api.evaluation import ScoringSettings

    api = PromptTemplates()
    assert PromptSet(api.system, api.question, api.positive_answer, api.negative_answer) == SEED_PROMPTS
    answers = ScoringSettings.model_fields
    assert (answers["positive_answer"].default, answers["negative_answer"].default) == (
        SEED_PROMPTS.positive_answer, SEED_PROMPTS.negative_answer)

    prep = argparse.ArgumentParser()
    dataprep_cli.configure(prep)
    args = prep.parse_args(["--labels-csv", "/l.csv", "--output-dir", "/o", "--images-dir", "/i"])
    assert dataprep_cli.options_from_args(args).prompts == SEED_PROMPTS == PrepOptions("/l.csv", Path("/o")).prompts

    evaluate = argparse.ArgumentParser()
    cli_evaluate.configure(evaluate)
    defaults = {action.dest: action.default for action in evaluate._actions}
    assert (defaults["positive_answer"], defaults["negative_answer"]) == (
        SEED_PROMPTS.positive_answer, SEED_PROMPTS.negative_answer)
    config_fields = {field.name: field.default for field in dataclasses.fields(EvaluateOptions)}
    assert (config_fields["positive_answer"], config_fields["negative_answer"]) == (
        SEED_PROMPTS.positive_answer, SEED_PROMPTS.negative_answer)


# ---- the model location format BASE+ADAPTER --------------------------------------------------------------------


@pytest.mark.parametrize(("model", "adapter"), [
    ("google/gemma-3-4b-it", None),
    ("google/gemma-3-4b-it", "gs://bucket/tuned-models/gemma3-melanoma/adapter"),
    ("/models/base", "/mnt/gcs/runs/adapter"),
])
def test_the_evaluator_reads_back_the_location_the_operator_writes(model, adapter):
    from mmft_evaluator.model_spec import parse_model_argument

    spec = parse_model_argument(f"tuned={format_location(model, adapter)}")
    assert (spec.model, spec.adapter) == (model, adapter)
    assert spec.describe() == format_location(model, adapter) == str(parse_location(spec.describe()))


@pytest.mark.parametrize(("text", "message"), [
    ("base+", "needs both"), ("+adapter", "needs both"), ("a+b+c", "only one '+'"),
])
def test_a_malformed_location_is_refused_with_its_reason(text, message):
    with pytest.raises(ModelLocationError, match=re.escape(message)):
        parse_location(text)


def test_no_second_formatter_or_parser_of_the_location():
    # f"{base}+{adapter}" or text.partition("+") in the code that writes or reads locations is a second copy of the
    # format (tests may spell it as a user types it).
    copies = re.compile(r"\}\+\{|(partition|split)\(\s*[\"']\+[\"']")
    found = [str(path.relative_to(ROOT)) for folder in (*SOURCE_DIRS, "bench") for path in (ROOT / folder).rglob("*.py")
             if copies.search(path.read_text())]
    assert found == []


# ---- the trainer benchmark renders through the operator ---------------------------------------------------------


@pytest.fixture(scope="module")
def trainer_bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("train_gemma3_h200")
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.parametrize("variant", [
    "mmft-defaults", "rendered-qlora-b16-ckpt", "rendered-lora-b8-noliger", "mmft-b4",
    "mmft-b32-compile-liger-nodrop-w12", "mmft-b16-ligerall-fullhead",
])
def test_each_benchmark_variant_but_the_seed_is_the_operators_rendering(trainer_bench, variant):
    from mmft_operator.builders.axolotl_config import DatasetPaths, build_axolotl_config

    data, out, model = Path("/bench/data/train.jsonl"), Path("/bench/runs") / variant, Path("/bench/model")
    config = trainer_bench.variant_config(variant, model, data, out, smoke=False, ladder_steps=8)
    spec, full_head = trainer_bench.variant_spec(variant, data, trainer_bench.variant_steps(variant, False, 8))
    rendered = build_axolotl_config(spec, DatasetPaths(str(data)))
    # Only this run's paths, and the timing plugin's own switch, differ from what a user's FineTuneJob renders.
    assert config.pop(trainer_bench.FULL_HEAD_KEY, False) == full_head
    assert config == {**rendered, "base_model": str(model), "output_dir": str(out)}
    assert spec.compute.accelerator == trainer_bench.BENCH_ACCELERATOR


# ---- API field <-> Axolotl key ----------------------------------------------------------------------------------


def _leaf_fields(model, prefix: str = "") -> set[str]:
    fields = set()
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            fields |= _leaf_fields(info.annotation, f"{prefix}{name}.")
        else:
            fields.add(prefix + name)
    return fields


def test_every_typed_training_field_has_exactly_one_axolotl_key():
    from mmft_operator.api.finetunejob import TrainingSettings

    declared = [typed.field for typed in TYPED_KEYS]
    assert len(set(declared)) == len(declared) and len({typed.key for typed in TYPED_KEYS}) == len(TYPED_KEYS)
    # overrides is Axolotl's long tail itself, not a field of its own.
    assert set(declared) == _leaf_fields(TrainingSettings) - {"overrides"}


def test_the_renderer_writes_each_field_under_its_key_and_overrides_cannot_reach_it():
    from mmft_operator.api.finetunejob import FineTuneJobSpec, reserved_override_keys
    from mmft_operator.builders.axolotl_config import DatasetPaths, build_axolotl_config

    # Every field set, none to its default, so each rendered value can only come from its own field.
    spec = FineTuneJobSpec.model_validate({
        "baseModel": "google/gemma-3-4b-it", "dataset": {"trainPath": "/d/train.jsonl"}, "bucket": {"name": "bucket"},
        "training": {
            "adapter": "qlora", "loadIn4bit": True, "loadIn8bit": False,
            "lora": {"r": 8, "alpha": 32, "dropout": 0.1, "targetModules": "q_proj"},
            "sequenceLen": 2048, "optimizer": "adamw_torch", "lrScheduler": "linear", "learningRate": 1e-4,
            "weightDecay": 0.02, "maxSteps": 300, "warmupSteps": 7, "gradientCheckpointing": True,
            "gradientAccumulationSteps": 3, "microBatchSize": 5, "saveStrategy": "steps", "saveSteps": 25,
            "saveTotalLimit": 4, "chatTemplate": "gemma3n", "attentionImplementation": "eager", "imageSize": 448,
            "imageResizeAlgorithm": "bicubic", "loggingSteps": 3, "seed": 7,
        },
    })
    config = build_axolotl_config(spec, DatasetPaths("/d/train.jsonl"))
    rendered = {typed.key: config.get(typed.key) for typed in TYPED_KEYS if typed.key != "num_epochs"}
    assert rendered == {typed.key: typed.read(spec.training) for typed in TYPED_KEYS if typed.key != "num_epochs"}
    assert "num_epochs" not in config  # one run length: maxSteps is set
    assert {typed.key for typed in TYPED_KEYS} <= set(reserved_override_keys())




def test_the_trainers_checks_accept_every_value_the_api_accepts():
    # A FineTuneJob the API server admits must not fail the trainer's preflight on the raw YAML it renders: each
    # extreme the field's constraints allow passes the trainer's bound on its key.
    from mmft_operator.api.finetunejob import TrainingSettings
    from mmft_trainer.config_rules import BOUNDS

    checked, disagreements = [], set()
    for typed in TYPED_KEYS:
        if typed.key not in BOUNDS:
            continue
        model = TrainingSettings
        for name in typed.field.split("."):
            info = model.model_fields[name]
            model = info.annotation
        extremes = []
        for constraint in info.metadata:
            if getattr(constraint, "ge", None) is not None:
                extremes.append(constraint.ge)
            if getattr(constraint, "le", None) is not None:
                extremes.append(constraint.le)
            if getattr(constraint, "gt", None) is not None:
                extremes.append(constraint.gt + 1e-9)
            if getattr(constraint, "lt", None) is not None:
                extremes.append(constraint.lt - 1e-9)
        for value in extremes:
            if BOUNDS[typed.key].violation(value) is not None:
                disagreements.add((typed.key, value))
        checked.append(typed.key)
    assert len(checked) >= 10
    assert disagreements == set()
