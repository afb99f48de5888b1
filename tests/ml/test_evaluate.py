"""`mmft evaluate` on the tiny random Gemma 3 (CPU): outputs and their consistency, adapters, thresholds, the
generate method, per-model failures and the report contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmft_operator import cli
from mmft_operator.contracts.progress import WorkloadReport
from tiny_gemma import ANSWERS

pytestmark = pytest.mark.ml

NEGATIVE, POSITIVE = ANSWERS
ANSWER_FLAGS = ["--positive-answer", POSITIVE, "--negative-answer", NEGATIVE]


def _evaluate(tmp_path: Path, monkeypatch, *argv: str) -> tuple[int, Path, WorkloadReport | None]:
    output_dir = tmp_path / "out"
    report_file = tmp_path / "report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(report_file))
    code = cli.main(["evaluate", "--output-dir", str(output_dir), "--workers", "0", "--batch-size", "4",
                     *ANSWER_FLAGS, *argv])
    report = WorkloadReport.from_json(report_file.read_text()) if report_file.exists() else None
    return code, output_dir, report


def _predictions(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]


def _scores(output_dir: Path, model: str) -> list[float]:
    return [row["score"] for row in _predictions(output_dir) if row["model"] == model]


@pytest.fixture(scope="module")
def lora_adapter(tiny_gemma3_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A LoRA adapter with non-zero weights on the tiny model, and the same adapter merged into a full model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(7)
    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma3_dir, dtype=torch.float32)
    # init_lora_weights=False gives random B matrices, so the adapter really changes the outputs.
    config = LoraConfig(r=4, lora_alpha=64, target_modules=r".*language_model.*\.(q_proj|v_proj|down_proj)",
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(root / "adapter")
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(root / "merged")
    AutoProcessor.from_pretrained(tiny_gemma3_dir).save_pretrained(root / "merged")
    return root / "adapter", root / "merged"


def test_outputs_are_consistent_and_failures_stay_per_model(tmp_path, monkeypatch, tiny_gemma3_dir,
                                                             tiny_chat_dataset, lora_adapter, capsys):
    adapter, _ = lora_adapter
    code, out, report = _evaluate(
        tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset),
        "--model", f"base={tiny_gemma3_dir}", "--model", f"missing={tmp_path / 'no-such-model'}",
        "--model", f"tuned={tiny_gemma3_dir}+{adapter}")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "missing", "tuned"}
    assert "error" in metrics["models"]["missing"] and "error" not in metrics["models"]["tuned"]
    rows = _predictions(out)
    examples = len(tiny_chat_dataset.read_text().splitlines())
    assert len(rows) == 2 * examples
    assert all(0.0 <= row["score"] <= 1.0 and row["prediction"] == int(row["score"] >= 0.5) for row in rows)
    capsys.readouterr()
    for model in ("base", "tuned"):
        assert cli.main(["metrics", str(out / "predictions.jsonl"), "--model", model]) == 0
        from_file = json.loads(capsys.readouterr().out)
        assert from_file == metrics["models"][model]["metrics"]
    assert {p.name for p in (out / "plots").iterdir()} == {"confusion-base.png", "confusion-tuned.png",
                                                           "roc.png", "pr.png"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "no-such-model" in html and "tuned" in html
    assert report.phase == "Completed"
    assert report.outputs == {"report": str(out / "report.html"), "metrics": str(out / "metrics.json"),
                              "predictions": str(out / "predictions.jsonl")}
    assert report.results["best"] in {"base", "tuned"}
    assert report.results["models"]["tuned"]["rocAuc"] == metrics["models"]["tuned"]["metrics"]["roc_auc"]
    assert report.results["models"]["tuned"]["threshold"] == 0.5
    assert "error" in report.results["models"]["missing"]


def test_adapter_changes_scores_and_equals_the_merged_model(tmp_path, monkeypatch, tiny_gemma3_dir,
                                                             tiny_chat_dataset, lora_adapter):
    adapter, merged = lora_adapter
    code, out, _ = _evaluate(
        tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset), "--limit", "6",
        "--model", f"base={tiny_gemma3_dir}", "--model", f"tuned={tiny_gemma3_dir}+{adapter}",
        "--model", f"merged={merged}", "--model", f"adapter-only={adapter}")
    assert code == 0
    base, tuned, merged_scores, adapter_only = (_scores(out, name) for name in ("base", "tuned", "merged",
                                                                                "adapter-only"))
    assert len(tuned) == 6
    assert max(abs(a - b) for a, b in zip(base, tuned, strict=True)) > 1e-3
    assert tuned == pytest.approx(merged_scores, abs=1e-4)
    assert tuned == pytest.approx(adapter_only, abs=1e-6)


def test_worker_slices_divide_the_gpu_batch():
    from mmft_evaluator.scoring import worker_slice_size

    assert worker_slice_size(64, 15) == 4
    assert worker_slice_size(64, 0) == 64 and worker_slice_size(64, 1) == 64
    assert worker_slice_size(6, 2) == 3 and worker_slice_size(7, 3) == 1


def test_batched_scores_equal_one_at_a_time_despite_padding(tmp_path, monkeypatch, tiny_gemma3_dir,
                                                            tiny_chat_dataset):
    # Different question lengths force left padding inside each batch.
    rows = [json.loads(line) for line in tiny_chat_dataset.read_text().splitlines()][:6]
    for index, row in enumerate(rows):
        row["messages"][1]["content"][1]["text"] += " Please look carefully." * index
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(row) + "\n" for row in rows))
    batched_dir = tmp_path / "batched"
    batched_dir.mkdir()
    # Two workers prepare slices of 3 that are joined into batches of 6: padding inside slices and across them.
    code, out, _ = _evaluate(batched_dir, monkeypatch, "--test-jsonl", str(mixed), "--model", f"m={tiny_gemma3_dir}",
                             "--batch-size", "6", "--workers", "2")
    assert code == 0
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    code, single_out, _ = _evaluate(single_dir, monkeypatch, "--test-jsonl", str(mixed),
                                    "--model", f"m={tiny_gemma3_dir}", "--batch-size", "1")
    assert code == 0
    assert _scores(out, "m") == pytest.approx(_scores(single_out, "m"), abs=1e-5)
    assert len(set(round(s, 6) for s in _scores(out, "m"))) > 1


def test_target_recall_threshold_is_chosen_on_validation(tmp_path, monkeypatch, tiny_gemma3_dir, tiny_chat_dataset):
    code, out, report = _evaluate(
        tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset), "--validation-jsonl", str(tiny_chat_dataset),
        "--model", f"base={tiny_gemma3_dir}", "--threshold-policy", "target-recall", "--target-recall", "1.0")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]["base"]
    # Validation and test are the same file here, so the recall target must be met on test too.
    assert metrics["metrics"]["recall"] == 1.0
    scores = _scores(out, "base")
    positives = [s for s, row in zip(scores, _predictions(out), strict=True) if row["label"] == 1]
    assert metrics["threshold"] == pytest.approx(min(positives))
    assert report.results["models"]["base"]["threshold"] == metrics["threshold"]


def test_generate_method_keeps_unparseable_answers_in_the_counts(tmp_path, monkeypatch, tiny_gemma3_dir,
                                                                  tiny_chat_dataset):
    code, out, report = _evaluate(
        tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset), "--limit", "4",
        "--model", f"base={tiny_gemma3_dir}", "--method", "generate", "--max-new-tokens", "8")
    assert code == 0
    rows = _predictions(out)
    assert len(rows) == 4 and all("answer" in row and "score" not in row for row in rows)
    metrics = json.loads((out / "metrics.json").read_text())["models"]["base"]
    assert metrics["unparsed"] == sum(1 for row in rows if not row["parsed"])
    assert metrics["metrics"]["n"] == 4
    assert metrics["metrics"]["roc_auc"] is None and metrics["threshold"] is None
    assert "rocAuc" not in report.results["models"]["base"]  # undefined: absent, never a made-up 0


def test_every_model_failing_fails_the_run(tmp_path, monkeypatch, tiny_chat_dataset):
    code, out, report = _evaluate(tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset),
                                  "--model", f"gone={tmp_path / 'absent'}")
    assert code == 1
    assert report.phase == "Failed" and "gone" in report.message
    assert "error" in json.loads((out / "metrics.json").read_text())["models"]["gone"]


def test_unlabelled_test_line_is_a_data_error_naming_the_line(tmp_path, monkeypatch, tiny_gemma3_dir,
                                                              tiny_chat_dataset):
    rows = tiny_chat_dataset.read_text().splitlines()
    broken = json.loads(rows[2])
    broken["messages"][2]["content"][0]["text"] = "Perhaps."
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(rows[:2] + [json.dumps(broken)]) + "\n")
    code, _, report = _evaluate(tmp_path, monkeypatch, "--test-jsonl", str(path), "--model", f"m={tiny_gemma3_dir}")
    assert code == 65
    assert f"{path}:3" in report.message


def test_forced_choice_method_scores_every_image_and_reaches_the_report_contract(tmp_path, monkeypatch,
                                                                                 tiny_gemma3_dir,
                                                                                 tiny_chat_dataset):
    # Answers of several tokens each (the tiny tokenizer merges the seed's answer sentences into one token).
    answers = ["--positive-answer", "Yes, this does appear to be malignant melanoma.",
               "--negative-answer", "No, this does not appear to be malignant melanoma."]
    code, out, report = _evaluate(
        tmp_path, monkeypatch, "--test-jsonl", str(tiny_chat_dataset), "--limit", "6",
        "--model", f"base={tiny_gemma3_dir}", "--method", "forced-choice", *answers)
    assert code == 0
    rows = _predictions(out)
    assert len(rows) == 6 and all(0.0 <= row["score"] <= 1.0 and row["threshold"] == 0.5 for row in rows)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["settings"]["method"] == "forced-choice" and summary["models"]["base"]["method"] == "forced-choice"
    result = report.results["models"]["base"]
    assert result["threshold"] == 0.5 and result["rocAuc"] == summary["models"]["base"]["metrics"]["roc_auc"]
