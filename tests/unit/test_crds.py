"""crds/*.yaml are generated from the pydantic models and must not go stale; samples satisfy the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mmft_operator.api.crdgen import all_crds
from mmft_operator.api.kinds import BY_KIND

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crds_are_current() -> None:
    """Both copies: the kustomize base's crds/ and the Helm chart's crds/ (installed by `helm install`)."""
    result = subprocess.run(
        [sys.executable, "-m", "mmft_operator.cli", "crds", "--check",
         "--out", str(ROOT / "crds"), "--out", str(ROOT / "deploy/helm/mmft/crds")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr


def _walk(schema: dict, where: str = ""):
    yield where, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from _walk(prop, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{where}{{}}")


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_every_field_is_described_and_structural(name: str) -> None:
    root = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _walk(root["properties"]["spec"], "spec"):
        if where.endswith("[]") or where.endswith("{}"):
            continue
        assert node.get("description"), f"{name}: {where} has no description (kubectl explain shows nothing)"
        assert "$ref" not in node and "title" not in node, f"{name}: {where} is not structural"
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), f"{name}: {where} has anyOf"


def test_qlora_rule_and_defaults_reach_the_crd() -> None:
    crd = all_crds()["mmft.io_finetunejobs.yaml"]
    training = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["training"]
    rules = [rule["rule"] for rule in training["x-kubernetes-validations"]]
    assert any("self.adapter != 'qlora'" in rule and "self.loadIn4bit" in rule for rule in rules)
    assert training["properties"]["lora"]["default"]["r"] == 32, "CEL checks defaults as written: they must be whole"
    assert training["properties"]["lora"]["properties"]["r"]["default"] == 32


@pytest.mark.parametrize("path", sorted((ROOT / "deploy/samples").rglob("*.yaml")), ids=lambda p: p.name)
def test_samples_satisfy_the_models(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if not document or not str(document.get("apiVersion", "")).startswith("mmft.io/"):
            continue
        BY_KIND[document["kind"]].spec_model.model_validate(document["spec"])


def test_api_reference_is_current_and_lists_every_spec_field() -> None:
    from mmft_operator.commands.crds import render_api_reference

    text = render_api_reference()
    assert (ROOT / "docs/api-reference.md").read_text() == text, "run `python -m mmft_operator.cli crds`"
    for name, crd in all_crds().items():
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for where, _schema in _walk(spec, "spec"):
            if where != "spec" and "[]" not in where.split(".")[-1] and "{}" not in where:
                assert f"| `{where}` |" in text, f"{name}: {where} missing from docs/api-reference.md"
