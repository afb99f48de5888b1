"""The product's path on CPU with the tiny Gemma 3: `mmft dataprep` on generated images -> `mmft train` (a few
steps, LoRA) -> `mmft evaluate` of base and tuned -> predictions, metrics and report that agree with each other."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mmft_operator.cli import main as mmft
from mmft_operator.contracts.progress import WorkloadReport
from mmft_operator.model_location import format_location
from trainer_configs import cpu_config, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from dataprep_fixtures import SmallDataset  # noqa: E402

pytestmark = pytest.mark.ml


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_dataprep_train_evaluate(tmp_path, monkeypatch, tiny_gemma3_dir, capsys):
    (tmp_path / "isic").mkdir()
    dataset = SmallDataset(tmp_path / "isic", patients=24, images=120, positives=20)
    prepared = tmp_path / "prepared"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(tmp_path / "dataprep-report.json"))
    assert mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-dir", str(dataset.images_dir),
                 "--output-dir", str(prepared), "--image-size", "32", "--workers", "1"]) == 0

    train_dir = tmp_path / "train"
    config = write_config(tmp_path / "axolotl.yaml",
                          cpu_config(tiny_gemma3_dir, prepared / "train.jsonl", train_dir, max_steps=4))
    monkeypatch.setenv("MMFT_REPORT_FILE", str(tmp_path / "train-report.json"))
    assert mmft(["train", str(config)]) == 0
    assert (train_dir / "adapter_config.json").is_file()

    evaluation = tmp_path / "evaluation"
    report_file = tmp_path / "evaluate-report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(report_file))
    code = mmft(["evaluate", "--test-jsonl", str(prepared / "test.jsonl"),
                 "--validation-jsonl", str(prepared / "validation.jsonl"),
                 "--model", f"base={tiny_gemma3_dir}",
                 "--model", f"tuned={format_location(str(tiny_gemma3_dir), str(train_dir))}",
                 "--threshold-policy", "max-balanced-accuracy", "--output-dir", str(evaluation),
                 "--workers", "1", "--batch-size", "8"])
    assert code == 0

    test_rows = _jsonl(prepared / "test.jsonl")
    test_ids = sorted(Path(row["messages"][1]["content"][0]["path"]).stem for row in test_rows)
    predictions = _jsonl(evaluation / "predictions.jsonl")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    report = WorkloadReport.from_json(report_file.read_text())
    for model in ("base", "tuned"):
        rows = [row for row in predictions if row["model"] == model]
        assert sorted(row["id"] for row in rows) == test_ids
        threshold = metrics["models"][model]["threshold"]
        assert all(row["prediction"] == int(row["score"] >= threshold) for row in rows)
        capsys.readouterr()
        assert mmft(["metrics", str(evaluation / "predictions.jsonl"), "--model", model]) == 0
        assert json.loads(capsys.readouterr().out) == metrics["models"][model]["metrics"]
        assert report.results["models"][model]["balancedAccuracy"] == \
            metrics["models"][model]["metrics"]["balanced_accuracy"]
    positives = sum(1 for row in test_rows if row["messages"][2]["content"][0]["text"].startswith("Yes"))
    assert metrics["examples"] == len(test_rows) and metrics["positives"] == positives
    base_scores = [row["score"] for row in predictions if row["model"] == "base"]
    tuned_scores = [row["score"] for row in predictions if row["model"] == "tuned"]
    assert base_scores != tuned_scores, "four LoRA steps should move the tuned model's scores"
    assert report.phase == "Completed" and report.results["best"] == metrics["best"]
    html = (evaluation / "report.html").read_text()
    assert "base" in html and "tuned" in html and html.count("data:image/png;base64,") == 4
