"""Evaluation.spec.scoring's compile settings reach the evaluator Job as `mmft evaluate` flags and, for the
compile cache, as TORCHINDUCTOR_CACHE_DIR under the bucket mount."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mmft_operator.api.evaluation import EvaluationSpec
from mmft_operator.render import render_documents
from pydantic import ValidationError

SAMPLE = Path(__file__).resolve().parents[2] / "deploy/samples/gemma3-melanoma/evaluation.yaml"


def _evaluator_container(scoring: dict) -> dict:
    evaluation = yaml.safe_load(SAMPLE.read_text())
    evaluation["spec"]["scoring"] = {**evaluation["spec"].get("scoring", {}), **scoring}
    jobs = [doc for doc in render_documents([evaluation], "default") if doc["kind"] == "Job"]
    assert len(jobs) == 1
    return jobs[0]["spec"]["template"]["spec"]["containers"][0]


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def test_defaults_let_the_evaluator_decide_and_keep_no_cache():
    container = _evaluator_container({})
    command = container["command"] + container.get("args", [])
    assert _flag(command, "--compile") == "auto" and _flag(command, "--compile-mode") == "default"
    assert "TORCHINDUCTOR_CACHE_DIR" not in {env["name"] for env in container["env"]}


def test_explicit_compile_settings_and_cache_directory_reach_the_job():
    container = _evaluator_container(
        {"compile": "VisionAndLanguage", "compileMode": "MaxAutotune", "compileCachePath": ".mmft/compile-cache/"})
    command = container["command"] + container.get("args", [])
    assert _flag(command, "--compile") == "vision+language"
    assert _flag(command, "--compile-mode") == "max-autotune-no-cudagraphs"
    env = {item["name"]: item.get("value") for item in container["env"]}
    mount = yaml.safe_load(SAMPLE.read_text())["spec"]["bucket"].get("mountPath", "/mnt/gcs")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == f"{mount}/.mmft/compile-cache"


def test_generate_scoring_gets_no_compile_flags():
    container = _evaluator_container({"method": "generate", "compile": "Vision"})
    assert "--compile" not in container["command"] + container.get("args", [])


@pytest.mark.parametrize("scoring", [{"compile": "Everything"}, {"compileMode": "Fast"},
                                     {"compileCachePath": "/absolute/cache"}])
def test_invalid_compile_settings_are_rejected(scoring):
    spec = yaml.safe_load(SAMPLE.read_text())["spec"]
    spec["scoring"] = {**spec.get("scoring", {}), **scoring}
    with pytest.raises(ValidationError):
        EvaluationSpec.model_validate(spec)
