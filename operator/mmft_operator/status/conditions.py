"""Conditions keyed by type, per Kubernetes API conventions: a transition time moves only when status moves."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConditionUpdate:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_word(value: bool | None) -> str:
    return "Unknown" if value is None else ("True" if value else "False")


def merge_conditions(
    existing: list[dict[str, Any]], updates: list[ConditionUpdate], generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    by_type = {condition["type"]: condition for condition in existing}
    merged = []
    for update in updates:
        previous = by_type.pop(update.type, None)
        status = _status_word(update.status)
        moved = previous is None or previous.get("status") != status
        merged.append(
            {
                "type": update.type,
                "status": status,
                "reason": update.reason,
                "message": update.message,
                "lastTransitionTime": timestamp(now) if moved else previous["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    # Conditions this kind no longer computes are kept: another controller (or an older version) may own them.
    merged.extend(by_type.values())
    return merged
