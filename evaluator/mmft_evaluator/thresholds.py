"""Choosing the decision threshold on P(positive) from the validation split.

A prediction is positive when ``score >= threshold``. Policies:

* ``fixed``: the given threshold (0.5 by default), no validation split needed.
* ``max-balanced-accuracy``: the validation score that maximises (recall + specificity) / 2; ties go to the
  higher threshold (fewer false positives).
* ``target-recall``: the highest validation score that still reaches the target recall, so specificity is as
  high as the recall target allows.
"""

from __future__ import annotations

import numpy as np

from .metrics import _descending_threshold_counts

POLICIES = ("fixed", "max-balanced-accuracy", "target-recall")


class ThresholdError(ValueError):
    """The validation split cannot support the requested policy (for instance it has no positives)."""


def choose_threshold(policy: str, labels=None, scores=None, fixed: float = 0.5, target_recall: float = 0.9) -> float:
    if policy == "fixed":
        return float(fixed)
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {', '.join(POLICIES)}")
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives == 0:
        raise ThresholdError(f"policy {policy!r} needs positive examples in the validation split; it has none")
    tps, fps, thresholds = _descending_threshold_counts(y, s)
    recall = tps / positives
    if policy == "target-recall":
        reaching = np.flatnonzero(recall >= target_recall - 1e-12)
        return float(thresholds[reaching[0]])
    if negatives == 0:
        raise ThresholdError(f"policy {policy!r} needs negative examples in the validation split; it has none")
    balanced_accuracy = (recall + (1 - fps / negatives)) / 2
    return float(thresholds[int(np.argmax(balanced_accuracy))])
