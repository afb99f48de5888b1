"""The toy pipeline end to end in real containers on kind (MMFT_TEST_BACKEND=kind; never run on machines without
Docker, see docs/kind.md): dataprep -> 4 LoRA steps on the tiny Gemma 3 -> evaluation of base vs tuned."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cluster_helpers import ROOT

pytestmark = pytest.mark.kind_only

SAMPLES = ROOT / "deploy/kind/samples/tiny-pipeline"
BUCKET = "mmft-kind"


def _write_inputs(bucket: Path) -> None:
    sys.path[:0] = [str(ROOT / "tests/ml"), str(ROOT / "tests/unit")]
    from dataprep_fixtures import SmallDataset
    from tiny_gemma import build_tiny_gemma3

    (bucket / "inputs/isic").mkdir(parents=True, exist_ok=True)
    SmallDataset(bucket / "inputs/isic", patients=24, images=120, positives=20)
    build_tiny_gemma3(bucket / "models/tiny-gemma3")


def test_tiny_pipeline_runs_in_real_containers(kubectl, backend, namespace) -> None:
    bucket = backend.bucket_dir(BUCKET)
    _write_inputs(bucket)
    kubectl("apply", "-n", namespace, "-k", str(SAMPLES))
    kubectl("wait", "-n", namespace, "evaluation/tiny-gemma3", "--for=condition=Succeeded", "--timeout=30m")
    evaluation = json.loads(kubectl("get", "-n", namespace, "evaluation/tiny-gemma3", "-o", "json").stdout)
    names = {model["name"] for model in evaluation["status"]["models"]}
    assert names == {"base", "tuned"}
    report_dir = bucket / "evaluations/tiny-gemma3"
    assert (report_dir / "report.html").exists() and (report_dir / "metrics.json").exists()
