"""The evaluator's inputs without a model: answer parsing, the chat JSONL, model specs and `mmft evaluate`
argument errors (exit 78 before any model loads). No torch needed, hence no `ml` marker."""

from __future__ import annotations

import json

import pytest
from mmft_evaluator.answers import parse_answer
from mmft_evaluator.examples import ExamplesError, read_examples
from mmft_evaluator.model_spec import ModelSpec, ModelSpecError, parse_model_argument, parse_model_arguments
from mmft_operator import cli
from mmft_operator.seed_prompts import SEED_PROMPTS

POSITIVE = SEED_PROMPTS.positive_answer
NEGATIVE = SEED_PROMPTS.negative_answer


@pytest.mark.parametrize(("text", "expected"), [
    (POSITIVE, 1),
    (NEGATIVE, 0),
    # MedGemma's style from the seed: reasoning first, verdict last.
    ("The lesion shows irregular borders. These features are suggestive of melanoma. " + POSITIVE, 1),
    ("yes - I think this is malignant melanoma", 1),
    ("No. It looks like a benign nevus.", 0),
    ("Based on the image, no sign of malignant melanoma is visible", 0),
    ("The image shows a skin lesion with mixed colours.", None),
    ("", None),
])
def test_answer_parsing(text, expected):
    assert parse_answer(text, POSITIVE, NEGATIVE) == expected


def _row(label_text=None, **extra):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "image", "path": "images/ISIC_0001.jpg"},
                                     {"type": "text", "text": SEED_PROMPTS.question}]},
    ]
    if label_text is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": label_text}]})
    return json.dumps({"messages": messages, **extra})


def test_examples_take_labels_from_answers_or_label_field(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join([_row(POSITIVE), _row(NEGATIVE), "", _row(label=1, id="x")]) + "\n")
    examples = read_examples(path, POSITIVE, NEGATIVE)
    assert [e.label for e in examples] == [1, 0, 1]
    assert [e.id for e in examples] == ["ISIC_0001", "ISIC_0001", "x"]
    assert examples[0].image == str(tmp_path / "images" / "ISIC_0001.jpg")
    assert all(m["role"] != "assistant" for m in examples[0].prompt)


@pytest.mark.parametrize(("line", "message"), [
    (_row("Maybe."), "does not read as"),
    (_row(label=3), "'label' must be 0 or 1"),
    ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "label": 1}', "no image entry"),
    ("{oops", "not valid JSON"),
])
def test_bad_example_line_is_named(tmp_path, line, message):
    path = tmp_path / "test.jsonl"
    path.write_text(_row(POSITIVE) + "\n" + line + "\n")
    with pytest.raises(ExamplesError, match=message) as error:
        read_examples(path, POSITIVE, NEGATIVE)
    assert f"{path}:2:" in str(error.value)


def test_model_specs():
    assert parse_model_argument("base=google/gemma-3-4b-it") == ModelSpec("base", "google/gemma-3-4b-it")
    assert parse_model_argument("tuned=google/gemma-3-4b-it+gs://b/run/adapter") == ModelSpec(
        "tuned", "google/gemma-3-4b-it", "gs://b/run/adapter")
    for bad in ("noequals", "x=", "bad name=m", "t=+adapter", "t=a+b+c"):
        with pytest.raises(ModelSpecError):
            parse_model_argument(bad)
    with pytest.raises(ModelSpecError, match="repeated: a"):
        parse_model_arguments(["a=m1", "a=m2"])


def _exit_code(argv: list[str]) -> int:
    """The CLI's exit status, whether argparse exits (usage errors) or main returns (checked values)."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(("extra", "message"), [
    (["--model", "nameless"], "expected NAME=SPEC"),
    (["--model", "m=x", "--threshold", "1.5"], "--threshold 1.5 must be between 0 and 1"),
    (["--model", "m=x", "--threshold-policy", "max-balanced-accuracy"], "--validation-jsonl"),
    (["--model", "m=x", "--batch-size", "0"], "--batch-size 0 must be at least 1"),
    (["--model", "m=x", "--output-uri", "s3://b/p"], "must start with gs://"),
    (["--model", "m=x", "--baseline", "other"], "--baseline 'other'"),
    (["--model", "m=x", "--method", "vibes"], "invalid choice"),
    ([], "--model"),
])
def test_bad_arguments_exit_78_before_loading_anything(tmp_path, capsys, extra, message):
    test = tmp_path / "test.jsonl"
    test.write_text(_row(POSITIVE) + "\n")
    code = _exit_code(["evaluate", "--test-jsonl", str(test), "--output-dir", str(tmp_path / "out"), *extra])
    assert code == 78
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_test_file_is_a_config_error(tmp_path, capsys):
    code = cli.main(["evaluate", "--test-jsonl", str(tmp_path / "nope.jsonl"), "--model", "m=x",
                     "--output-dir", str(tmp_path / "out")])
    assert code == 78 and "no such file" in capsys.readouterr().err
