"""The predictions JSONL contract shared by `mmft evaluate` (writer) and `mmft metrics` (reader).

One object per line: ``{"id": ..., "label": 0|1, "prediction": 0|1, "score": optional float}``; `mmft evaluate`
adds ``model``, ``threshold`` and ``answer`` (the generated text, when generated). Readers ignore unknown keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


class PredictionsError(ValueError):
    """A predictions file that breaks the contract; the message names the file and line."""


@dataclass
class Prediction:
    id: str
    label: int
    prediction: int
    score: float | None = None

    def to_json_dict(self, **extra) -> dict:
        row = {"id": self.id, "label": self.label, "prediction": self.prediction}
        if self.score is not None:
            row["score"] = self.score
        row.update({key: value for key, value in extra.items() if value is not None})
        return row


def _binary(value, field: str, where: str) -> int:
    # bool is an int subclass; JSON true/false is accepted as 1/0 only when written as numbers, so reject it.
    if isinstance(value, bool) or value not in (0, 1):
        raise PredictionsError(f"{where}: {field!r} must be 0 or 1, got {json.dumps(value)}")
    return int(value)


def parse_prediction_line(text: str, where: str) -> Prediction:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise PredictionsError(f"{where}: not valid JSON ({error.msg} at character {error.pos + 1})") from None
    if not isinstance(row, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for required in ("id", "label", "prediction"):
        if required not in row:
            raise PredictionsError(f"{where}: missing required field {required!r}")
    score = row.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise PredictionsError(f"{where}: 'score' must be a finite number or absent, got {json.dumps(score)}")
        score = float(score)
    return Prediction(
        id=str(row["id"]),
        label=_binary(row["label"], "label", where),
        prediction=_binary(row["prediction"], "prediction", where),
        score=score,
    )


def write_predictions(path: str | Path, rows: list[dict]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
