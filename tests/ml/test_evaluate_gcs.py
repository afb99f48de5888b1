"""`mmft evaluate` with every input and output on GCS (a real GCS JSON API: gcp-storage-emulator)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mmft_operator import cli
from mmft_operator.contracts.progress import WorkloadReport
from tiny_gemma import ANSWERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from gcs_emulator import gcs_emulator  # noqa: E402,F401 - the fixture

pytestmark = pytest.mark.ml


def test_gcs_inputs_and_outputs(tmp_path, monkeypatch, gcs_emulator, tiny_gemma3_dir, tiny_chat_dataset):  # noqa: F811
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket("evaluate-gcs")
    for path in tiny_gemma3_dir.iterdir():
        bucket.blob(f"models/tiny/{path.name}").upload_from_filename(str(path))
    rows = []
    for line in tiny_chat_dataset.read_text().splitlines()[:4]:
        row = json.loads(line)
        image = Path(row["messages"][1]["content"][0]["path"])
        bucket.blob(f"data/images/{image.name}").upload_from_filename(str(image))
        row["messages"][1]["content"][0]["path"] = f"gs://evaluate-gcs/data/images/{image.name}"
        rows.append(json.dumps(row))
    bucket.blob("data/test.jsonl").upload_from_string("\n".join(rows) + "\n")

    report_file = tmp_path / "report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(report_file))
    negative, positive = ANSWERS
    code = cli.main(["evaluate", "--test-jsonl", "gs://evaluate-gcs/data/test.jsonl",
                     "--model", "base=gs://evaluate-gcs/models/tiny", "--output-dir", str(tmp_path / "out"),
                     "--output-uri", "gs://evaluate-gcs/runs/eval-1", "--cache-dir", str(tmp_path / "cache"),
                     "--workers", "0", "--positive-answer", positive, "--negative-answer", negative])
    assert code == 0
    report = WorkloadReport.from_json(report_file.read_text())
    assert report.outputs["predictions"] == "gs://evaluate-gcs/runs/eval-1/predictions.jsonl"
    assert report.outputs["metrics"] == "gs://evaluate-gcs/runs/eval-1/metrics.json"
    assert report.outputs["report"] == "gs://evaluate-gcs/runs/eval-1/report.html"
    uploaded = json.loads(bucket.blob("runs/eval-1/metrics.json").download_as_text())
    assert uploaded == json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert uploaded["models"]["base"]["metrics"]["n"] == 4
    assert bucket.blob("runs/eval-1/plots/roc.png").exists()
    lines = bucket.blob("runs/eval-1/predictions.jsonl").download_as_text().splitlines()
    assert len(lines) == 4
