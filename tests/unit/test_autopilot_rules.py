"""The Autopilot rules table (mmft_operator.autopilot_rules): shown in docs/autopilot-admission.md as generated,
and every pod size mmft renders by default fits the row it falls under, the FUSE sidecar's requests included."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmft_operator.accelerators import PROFILES
from mmft_operator.autopilot_rules import GENERAL_PURPOSE_RULE, RULES, markdown_table, rule_for
from mmft_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/autopilot-admission.md"


def _quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value)


def test_the_docs_show_the_table_as_generated():
    text = DOC.read_text()
    shown = text.split("<!-- rules table: generated -->\n", 1)[1].split("<!-- end of rules table -->", 1)[0]
    assert shown == markdown_table()


def test_every_gpu_row_comes_from_the_accelerator_table():
    gpu_rows = {(rule.accelerator, rule.gpus) for rule in RULES if rule.gpus}
    assert gpu_rows == {(label, gpus) for label, card in PROFILES.items() for gpus in card.autopilot_gpu_counts}
    assert all(rule.source.startswith("https://cloud.google.com/") for rule in RULES)


def test_minimums_are_below_maximums():
    for rule in RULES:
        for resource, minimum in rule.minimum.items():
            assert _quantity(minimum) < _quantity(rule.maximum[resource]), (rule.key, resource)


@pytest.mark.parametrize("accelerator", sorted(PROFILES))
def test_the_default_gpu_pod_with_its_sidecar_fits_every_offered_count(accelerator):
    card, settings = PROFILES[accelerator], OperatorSettings()
    for gpus in card.autopilot_gpu_counts:
        rule = rule_for(accelerator, gpus)
        assert card.cpu_per_gpu * gpus + _quantity(settings.gcsfuse_sidecar_cpu) <= _quantity(rule.maximum["cpu"])
        memory = card.memory_gib_per_gpu * gpus * 2**30 + _quantity(settings.gcsfuse_sidecar_memory)
        assert memory <= _quantity(rule.maximum["memory"]), (accelerator, gpus)


def test_a_gpu_count_autopilot_does_not_offer_has_no_row():
    assert rule_for("nvidia-h100-80gb", 1) is None
    assert rule_for("nvidia-l4", 0) is GENERAL_PURPOSE_RULE
