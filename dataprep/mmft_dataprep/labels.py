"""Parse the labels CSV (ISIC 2020 ground truth v1/v2 by default, any CSV through a column mapping)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from .errors import ConfigError
from .options import ColumnMapping


@dataclass(frozen=True)
class LabelRecord:
    image: str  # the image name as the CSV gives it
    label: int  # 1 positive, 0 negative
    group: str  # patient (or any unit that must stay within one split)
    line: int  # CSV line, for messages


@dataclass(frozen=True)
class DroppedItem:
    image: str
    reason: str
    detail: str

    def to_json(self) -> dict:
        return {"image": self.image, "reason": self.reason, "detail": self.detail}


def parse_labels(text: str, columns: ColumnMapping, source: str) -> tuple[list[LabelRecord], list[DroppedItem]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise ConfigError(f"{source}: the CSV is empty (no header line)")
    reader.fieldnames = header
    wanted = {"--image-column": columns.image, "--label-column": columns.label}
    if columns.group:
        wanted["--group-column"] = columns.group
    for flag, column in wanted.items():
        if column not in header:
            raise ConfigError(f"{source}: column {column!r} ({flag}) is not in the CSV header {header}")

    records: list[LabelRecord] = []
    dropped: list[DroppedItem] = []
    first_line_of: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        image = (row.get(columns.image) or "").strip()
        label = (row.get(columns.label) or "").strip()
        group = (row.get(columns.group) or "").strip() if columns.group else image
        if not image:
            dropped.append(DroppedItem(f"<line {line}>", "missing_image_name", f"{source} line {line}"))
            continue
        if image in first_line_of:
            dropped.append(DroppedItem(image, "duplicate_row",
                                       f"{source} line {line} repeats line {first_line_of[image]}"))
            continue
        first_line_of[image] = line
        if not label:
            dropped.append(DroppedItem(image, "missing_label", f"{source} line {line}: empty {columns.label!r}"))
            continue
        if not group:
            dropped.append(DroppedItem(image, "missing_group", f"{source} line {line}: empty {columns.group!r}"))
            continue
        records.append(LabelRecord(image, int(_matches(label, columns.positive_value)), group, line))
    return records, dropped


def parse_duplicates(text: str, source: str) -> dict[str, str]:
    """Image to drop -> the image it duplicates, from a two-column list of pairs (ISIC's duplicates CSV).

    The first image of a pair is kept so that near-identical images cannot land in two splits.
    """
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or len(rows[0]) < 2:
        raise ConfigError(f"{source}: expected a header and two columns of image names per line")
    return {row[1].strip(): row[0].strip() for row in rows[1:] if len(row) >= 2 and row[0].strip() and row[1].strip()}


def _matches(value: str, positive: str) -> bool:
    if value == positive:
        return True
    try:
        return float(value) == float(positive)
    except ValueError:
        return value.casefold() == positive.casefold()
