"""Binary classification metrics that say *why* a value is undefined instead of returning a silent 0.

Every ratio whose denominator is zero comes back as ``None`` with a reason in ``undefined``; the CLI prints those
as JSON ``null``. Definitions match scikit-learn (ROC AUC by the trapezoidal rule over distinct thresholds, PR AUC
as average precision, F1 = 2tp / (2tp + fp + fn)) so numbers agree with published tooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ConfusionCounts:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp


@dataclass
class MetricReport:
    counts: ConfusionCounts
    values: dict[str, float | None]
    undefined: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Flat JSON shape of `mmft metrics`: metric values, confusion counts, then the reasons for nulls."""
        return {
            **self.values,
            "tp": self.counts.tp,
            "fp": self.counts.fp,
            "tn": self.counts.tn,
            "fn": self.counts.fn,
            "n": self.counts.total,
            "positives": self.counts.positives,
            "negatives": self.counts.negatives,
            "undefined": dict(self.undefined),
        }


def confusion_counts(labels: Sequence[int], predictions: Sequence[int]) -> ConfusionCounts:
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predictions, dtype=bool)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    return ConfusionCounts(
        tp=int(np.sum(y & p)), fp=int(np.sum(~y & p)), tn=int(np.sum(~y & ~p)), fn=int(np.sum(y & ~p))
    )


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def classification_metrics(
    labels: Sequence[int], predictions: Sequence[int], scores: Sequence[float] | None = None
) -> MetricReport:
    """All metrics of `mmft metrics`. ``scores`` (P(positive), any monotone score works) enables the AUCs."""
    counts = confusion_counts(labels, predictions)
    tp, fp, tn, fn = counts.tp, counts.fp, counts.tn, counts.fn
    undefined: dict[str, str] = {}
    values: dict[str, float | None] = {
        "accuracy": _ratio(tp + tn, counts.total),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }
    if counts.total == 0:
        undefined["accuracy"] = "no examples"
    if values["precision"] is None:
        undefined["precision"] = "no predicted positives (tp + fp = 0)"
    if values["recall"] is None:
        undefined["recall"] = "no positive labels (tp + fn = 0)"
    if values["specificity"] is None:
        undefined["specificity"] = "no negative labels (tn + fp = 0)"
    if values["f1"] is None:
        undefined["f1"] = "no positive labels and no predicted positives (2tp + fp + fn = 0)"
    if values["recall"] is None or values["specificity"] is None:
        values["balanced_accuracy"] = None
        undefined["balanced_accuracy"] = "needs both classes among the labels (recall and specificity)"
    else:
        values["balanced_accuracy"] = (values["recall"] + values["specificity"]) / 2
    values["roc_auc"], values["pr_auc"] = None, None
    if scores is None:
        undefined["roc_auc"] = undefined["pr_auc"] = "no scores in the predictions"
    else:
        y = np.asarray(labels, dtype=bool)
        s = np.asarray(scores, dtype=float)
        if counts.positives == 0 or counts.negatives == 0:
            undefined["roc_auc"] = "needs both classes among the labels"
        else:
            values["roc_auc"] = roc_auc(y, s)
        if counts.positives == 0:
            undefined["pr_auc"] = "no positive labels"
        else:
            values["pr_auc"] = average_precision(y, s)
    return MetricReport(counts=counts, values=values, undefined=undefined)


def _descending_threshold_counts(labels: np.ndarray, scores: np.ndarray):
    """Cumulative (tp, fp) when predicting positive at each distinct score, highest score first."""
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite numbers")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order].astype(float)
    # The last index of each run of equal scores: tied examples flip to positive together.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_labels.size - 1]
    tps = np.cumsum(sorted_labels)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps, fps, sorted_scores[last_of_run]


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf, like ``sklearn.metrics.roc_curve``
    without intermediate-point dropping. Needs both classes."""
    y = np.asarray(labels, dtype=bool)
    tps, fps, thresholds = _descending_threshold_counts(y, np.asarray(scores, dtype=float))
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def roc_auc(labels, scores) -> float:
    fpr, tpr, _ = roc_curve(labels, scores)
    # Trapezoidal rule written out: np.trapezoid is numpy>=2 only, np.trapz is gone there.
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at each distinct threshold, highest threshold first. Needs a positive."""
    y = np.asarray(labels, dtype=bool)
    tps, fps, thresholds = _descending_threshold_counts(y, np.asarray(scores, dtype=float))
    return tps / (tps + fps), tps / tps[-1], thresholds


def average_precision(labels, scores) -> float:
    """Sum over thresholds of (R_n - R_{n-1}) * P_n, as ``sklearn.metrics.average_precision_score``."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
