"""Condition bookkeeping: transition times move only with the status."""

from __future__ import annotations

import datetime as dt

from mmft_operator.status.conditions import ConditionUpdate, merge_conditions

T0 = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def test_transition_time_is_kept_while_status_holds_and_moves_when_it_flips() -> None:
    first = merge_conditions([], [ConditionUpdate("Running", False, "Pending", "waiting")], 1, T0)
    same = merge_conditions(first, [ConditionUpdate("Running", False, "Starting", "pulling")], 2, T1)
    assert same[0]["lastTransitionTime"] == "2026-11-29T10:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("Starting", 2)
    flipped = merge_conditions(same, [ConditionUpdate("Running", True, "Running", "")], 2, T1)
    assert (flipped[0]["status"], flipped[0]["lastTransitionTime"]) == ("True", "2026-11-29T10:05:00Z")


def test_unknown_status_and_foreign_conditions_are_kept() -> None:
    foreign = {"type": "QuotaReserved", "status": "True", "reason": "Kueue", "message": "",
               "lastTransitionTime": "2026-11-29T09:00:00Z"}
    merged = merge_conditions([foreign], [ConditionUpdate("ConfigValid", None, "PreflightPending")], 1, T0)
    assert merged[0]["status"] == "Unknown"
    assert foreign in merged

