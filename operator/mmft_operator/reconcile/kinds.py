"""The planner of each kind, by kind: what the controller and `mmft render` look a resource's kind up in."""

from __future__ import annotations

from .datasetprep import DatasetPrepReconciler
from .engine import KindReconciler
from .evaluation import EvaluationReconciler
from .finetunejob import FineTuneJobReconciler

RECONCILERS: dict[str, KindReconciler] = {
    "DatasetPrep": DatasetPrepReconciler(),
    "FineTuneJob": FineTuneJobReconciler(),
    "Evaluation": EvaluationReconciler(),
}
