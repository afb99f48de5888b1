"""`mmft metrics` end to end through the real CLI dispatcher: JSON output, exit codes and line-naming errors."""

import json

import pytest
from mmft_operator import cli
from mmft_operator.contracts.exit_codes import CONFIG_INVALID, DATA_INVALID


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _run(capsys, *argv):
    code = cli.main(["metrics", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prints_one_json_object_with_all_metrics(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", [
        '{"id": "a", "label": 1, "prediction": 1, "score": 0.9}',
        '{"id": "b", "label": 0, "prediction": 1, "score": 0.6}',
        "",
        '{"id": "c", "label": 0, "prediction": 0, "score": 0.1}',
    ])
    code, out, _ = _run(capsys, path)
    assert code == 0
    result = json.loads(out)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (1, 1, 1, 0)
    assert result["precision"] == 0.5 and result["roc_auc"] == 1.0 and result["pr_auc"] == 1.0
    assert result["undefined"] == {}


def test_without_scores_aucs_are_null_with_reason(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", ['{"id": 1, "label": 1, "prediction": 0}',
                                         '{"id": 2, "label": 0, "prediction": 0}'])
    code, out, _ = _run(capsys, path)
    result = json.loads(out)
    assert code == 0
    assert result["roc_auc"] is None and "no scores" in result["undefined"]["roc_auc"]
    assert result["precision"] is None


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "x", "label": 1', "not valid JSON"),
        ('{"id": "x", "label": 2, "prediction": 0}', "'label' must be 0 or 1"),
        ('{"id": "x", "label": 1}', "missing required field 'prediction'"),
        ('{"id": "x", "label": 1, "prediction": 1, "score": "high"}', "'score' must be a finite number"),
        ('[1, 0]', "expected a JSON object"),
    ],
)
def test_malformed_line_is_a_data_error_naming_the_line(tmp_path, capsys, bad_line, message):
    path = _write(tmp_path / "p.jsonl", ['{"id": "ok", "label": 0, "prediction": 0}', bad_line])
    code, out, err = _run(capsys, path)
    assert code == DATA_INVALID
    assert out == ""
    assert f"{path}:2:" in err and message in err


def test_empty_file_is_a_data_error(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", [])
    code, _, err = _run(capsys, path)
    assert code == DATA_INVALID and "no predictions" in err


def test_missing_file_is_a_config_error(tmp_path, capsys):
    code, _, err = _run(capsys, tmp_path / "absent.jsonl")
    assert code == CONFIG_INVALID and "no such file" in err


def test_scores_on_some_lines_only_is_an_error_naming_the_line(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", [
        '{"id": "a", "label": 1, "prediction": 1, "score": 0.9}',
        '{"id": "b", "label": 0, "prediction": 0}',
    ])
    code, _, err = _run(capsys, path)
    assert code == DATA_INVALID and f"{path}:2:" in err


def test_multi_model_file_needs_model_choice(tmp_path, capsys):
    path = _write(tmp_path / "p.jsonl", [
        '{"model": "base", "id": "a", "label": 1, "prediction": 1}',
        '{"model": "tuned", "id": "a", "label": 1, "prediction": 0}',
    ])
    code, _, err = _run(capsys, path)
    assert code == DATA_INVALID and "base, tuned" in err and "--model" in err
    code, out, _ = _run(capsys, path, "--model", "tuned")
    assert code == 0 and json.loads(out)["fn"] == 1
    code, _, err = _run(capsys, path, "--model", "medgemma")
    assert code == DATA_INVALID and "no predictions of model 'medgemma'" in err
