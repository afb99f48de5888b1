"""The trainer's side of the report contract (``mmft_operator.contracts.progress``): one report, updated in place.

Only the main process (global rank 0) publishes; other ranks hold a reporter that drops everything, so callers
never branch on rank themselves.
"""

from __future__ import annotations

import os
import time

from mmft_operator.contracts.progress import Phase, TrainingOutputs, TrainingProgress, TrainingReport
from mmft_operator.contracts.report_writer import ReportWriter


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


class RunReporter:
    def __init__(self, writer: ReportWriter | None) -> None:
        self._writer = writer
        self.report = TrainingReport(phase="Starting", progress=TrainingProgress(), outputs=TrainingOutputs())

    @classmethod
    def from_environment(cls) -> RunReporter:
        return cls(ReportWriter.from_environment() if is_main_process() else None)

    def phase(self, phase: Phase, message: str | None = None) -> None:
        self.report.phase = phase
        self.report.message = message
        self._publish(force=True)

    def progress(self, force: bool = False, **fields) -> None:
        # Validated, not copied: a field the contract does not have fails here, in the trainer's tests.
        self.report.progress = TrainingProgress.model_validate({**self.report.progress.model_dump(), **fields})
        self._publish(force=force)

    def output(self, name: str, value: str) -> None:
        self.report.outputs = TrainingOutputs.model_validate({**self.report.outputs.model_dump(), name: value})

    def outputs(self) -> dict[str, str]:
        """The outputs made so far, by their report names."""
        return self.report.outputs.model_dump(exclude_none=True)

    def _publish(self, force: bool) -> None:
        if self._writer is None:
            return
        self.report.updatedAt = TrainingReport.model_fields["updatedAt"].default_factory()
        self._writer.publish(self.report, force=force)


class Throughput:
    """Samples per second and ETA over the steps run by this process (a resumed run starts counting afresh)."""

    def __init__(self, samples_per_step: int, clock=time.monotonic) -> None:
        self.samples_per_step = samples_per_step
        self._clock = clock
        self._start: tuple[int, float] | None = None

    def start(self, step: int) -> None:
        self._start = (step, self._clock())

    def measure(self, step: int, total_steps: int | None) -> dict:
        if self._start is None:
            return {}
        first_step, started = self._start
        elapsed = self._clock() - started
        done = step - first_step
        if done <= 0 or elapsed <= 0:
            return {}
        seconds_per_step = elapsed / done
        measured = {"samplesPerSecond": round(done * self.samples_per_step / elapsed, 4)}
        if total_steps:
            measured["etaSeconds"] = max(0, round((total_steps - step) * seconds_per_step))
        return measured


class TokenRate:
    """Tokens per second between two readings of a running total (the first reading only starts the count)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, float] | None = None

    def measure(self, total_tokens: float) -> float | None:
        now = self._clock()
        last, self._last = self._last, (total_tokens, now)
        if last is None or now <= last[1] or total_tokens < last[0]:
            return None
        return round((total_tokens - last[0]) / (now - last[1]), 1)
