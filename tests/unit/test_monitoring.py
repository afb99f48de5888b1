"""mmft's alert rules: one source (deploy/monitoring/alerts.rules.yaml) wrapped for the Prometheus Operator and for
GKE's managed Prometheus, valid for promtool, and each alert proven to fire (and to stay silent) by promtool's rule
unit tests (deploy/monitoring/alerts.test.yaml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmft_localcluster.paths import tool_path

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy/monitoring"


@pytest.fixture(scope="module")
def promtool():
    return str(tool_path("promtool"))


def test_wrapped_rules_are_current():
    done = subprocess.run([sys.executable, str(MONITORING / "render_rules.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_promtool_accepts_the_rules(promtool):
    done = subprocess.run([promtool, "check", "rules", "alerts.rules.yaml"], cwd=MONITORING, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout


def test_each_alert_fires_when_it_should_and_not_before(promtool):
    done = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=MONITORING, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
