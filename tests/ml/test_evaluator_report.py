"""The HTML report on a hand-made metrics document: the seed-style relative changes, nulls and failed models."""

from __future__ import annotations

from mmft_evaluator.html_report import relative_change, render_report
from mmft_evaluator.metrics import classification_metrics


def _result(labels, predictions, scores=None, threshold=0.5):
    return {"spec": "m", "method": "logprob", "threshold": threshold,
            "metrics": classification_metrics(labels, predictions, scores).as_dict()}


def test_relative_change_matches_the_seeds_arithmetic():
    # The seed: specificity 0.011 -> 0.558 "a 4947.2% improvement" (from unrounded values; rounded gives 4972.7%).
    assert "+4972.7%" in relative_change(0.558, 0.011)
    assert "-39.7%" in relative_change(0.603, 1.0) and 'class="down"' in relative_change(0.603, 1.0)
    assert relative_change(0.5, 0.0) == "" and relative_change(None, 0.3) == ""


def test_report_compares_models_and_lists_failures():
    labels = [1, 1, 0, 0, 0, 0]
    summary = {
        "examples": 6, "positives": 2, "baseline": "base", "best": "tuned",
        "models": {
            "base": _result(labels, [1, 1, 1, 1, 1, 1], [0.9, 0.8, 0.7, 0.7, 0.6, 0.6]),
            "tuned": _result(labels, [1, 0, 0, 0, 0, 0], [0.9, 0.4, 0.3, 0.2, 0.2, 0.1]),
            "medgemma": {"spec": "google/medgemma-4b-it", "error": "OSError: <no access>"},
        },
        "settings": {"method": "logprob"},
    }
    html = render_report(summary, images={})
    # Specificity 0 -> 1: no relative change against a zero baseline; accuracy 2/6 -> 5/6 is +150%.
    assert "+150.0%" in html
    assert "OSError: &lt;no access&gt;" in html and "<no access>" not in html
    assert "<th>medgemma</th>" not in html
    # The base model never predicts negative, so precision is defined and F1 too; nothing is n/a here.
    assert "n/a" not in html


def test_undefined_values_show_na_with_the_reason():
    summary = {"examples": 2, "positives": 0, "baseline": "only", "best": None,
               "models": {"only": _result([0, 0], [0, 0], [0.1, 0.2])}, "settings": {}}
    html = render_report(summary, images={})
    assert 'title="no positive labels (tp + fn = 0)">n/a' in html
