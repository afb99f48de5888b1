"""`mmft render` goes through the operator's planner: references resolve as the operator resolves them once the
referenced resource succeeded, and what would keep the operator waiting is an error naming the reason."""

from __future__ import annotations

import json

import pytest
import yaml
from mmft_operator.render import RenderError, render_documents
from planner_world import SAMPLES

DOCUMENTS = [yaml.safe_load((SAMPLES / f"{kind}.yaml").read_text())
             for kind in ("datasetprep", "finetunejob", "evaluation")]


def _job(children: list[dict], name: str) -> str:
    return json.dumps(next(c for c in children if c["kind"] == "Job" and c["metadata"]["name"] == name))


def test_references_inside_the_documents_resolve_to_what_the_referenced_resource_produces() -> None:
    children = render_documents(DOCUMENTS, "ml")
    evaluator = _job(children, "gemma3-melanoma-evaluator")
    assert "google/gemma-3-4b-it+gs://my-mmft-bucket/tuned-models/gemma3-melanoma/adapter" in evaluator
    assert "/mnt/gcs/prepared/isic2020/test.jsonl" in evaluator


def test_references_outside_the_documents_render_as_placeholders_naming_them() -> None:
    evaluator = _job(render_documents(DOCUMENTS[2:], "ml"), "gemma3-melanoma-evaluator")
    assert "<adapter of FineTuneJob gemma3-melanoma>" in evaluator
    assert "<outputs of DatasetPrep isic2020>/testJsonl" in evaluator


def test_a_dataset_on_another_bucket_is_the_operators_bucket_mismatch() -> None:
    prep = {**DOCUMENTS[0], "spec": {**DOCUMENTS[0]["spec"], "bucket": {"name": "elsewhere"}}}
    with pytest.raises(RenderError, match="FineTuneJob gemma3-melanoma: DatasetBucketMismatch"):
        render_documents([prep, DOCUMENTS[1]], "ml")
