"""Progress output: a bar on a terminal, periodic lines (and report updates) in a pod log."""

from __future__ import annotations

import io
import logging

from mmft_dataprep.progress import LOG_INTERVAL_SECONDS, ProgressMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pod_log_gets_a_line_per_interval_and_the_report_an_update(caplog):
    clock, updates, stream = FakeClock(), [], io.StringIO()
    meter = ProgressMeter("images", 100, on_update=updates.append, stream=stream, clock=clock)
    with caplog.at_level(logging.INFO, logger="mmft_dataprep"):
        for _ in range(50):
            clock.now += LOG_INTERVAL_SECONDS / 10
            meter.advance()
        meter.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(updates) == 5 and updates[0].startswith("images: 10/100 (10.0%)")
    assert "eta" in updates[0] and lines[-1] == "images: 50/100 (50.0%), 0.7/s, eta 1m15s"
    assert stream.getvalue() == ""


def test_terminal_gets_a_redrawn_bar():
    clock, stream = FakeClock(), Terminal()
    meter = ProgressMeter("images", 4, stream=stream, clock=clock)
    for _ in range(4):
        clock.now += 1.0
        meter.advance()
    meter.close()
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0].startswith("[#######") and "images: 1/4" in frames[0]
    assert frames[-1].startswith("[" + "#" * 30 + "] images: 4/4 (100.0%)") and frames[-1].endswith("\n")
