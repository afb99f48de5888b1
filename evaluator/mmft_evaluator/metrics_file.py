"""Metrics of a predictions JSONL file, the engine of `mmft metrics`."""

from __future__ import annotations

import json
from pathlib import Path

from .metrics import classification_metrics
from .predictions import Prediction, PredictionsError, parse_prediction_line


class MetricsFileError(ValueError):
    pass


def _read_rows(path: Path, model: str | None) -> list[Prediction]:
    rows: list[Prediction] = []
    models_seen: set[str] = set()
    missing_score_at: str | None = None
    scored_at: str | None = None
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            where = f"{path}:{number}"
            try:
                prediction = parse_prediction_line(text, where)
            except PredictionsError as error:
                raise MetricsFileError(str(error)) from None
            row_model = json.loads(text).get("model")
            if row_model is not None:
                models_seen.add(str(row_model))
            if model is not None and row_model != model:
                continue
            if prediction.score is None:
                missing_score_at = missing_score_at or where
            else:
                scored_at = scored_at or where
            rows.append(prediction)
    if not rows and model is None:
        raise MetricsFileError(f"{path} holds no predictions (the file is empty or blank)")
    if model is None and len(models_seen) > 1:
        raise MetricsFileError(
            f"{path} holds predictions of several models ({', '.join(sorted(models_seen))}); choose one with --model"
        )
    if model is not None and not rows:
        known = ", ".join(sorted(models_seen)) or "none"
        raise MetricsFileError(f"{path} has no predictions of model {model!r} (models in the file: {known})")
    if missing_score_at and scored_at:
        raise MetricsFileError(
            f"{missing_score_at}: 'score' is missing although {scored_at} has one; give every line a score or none"
        )
    return rows


def metrics_of_file(path: str | Path, model: str | None = None) -> dict:
    rows = _read_rows(Path(path), model)
    scores = [row.score for row in rows] if rows and rows[0].score is not None else None
    report = classification_metrics([r.label for r in rows], [r.prediction for r in rows], scores)
    return report.as_dict()
