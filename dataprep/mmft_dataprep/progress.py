"""Progress for people: a bar on a terminal, a periodic line in a pod log, and the workload report."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("mmft_dataprep")

LOG_INTERVAL_SECONDS = 15.0
BAR_INTERVAL_SECONDS = 0.2
BAR_WIDTH = 30


class ProgressMeter:
    def __init__(self, label: str, total: int, on_update=None, stream=None, clock=time.monotonic) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._on_update = on_update  # called with (message) at each log interval, e.g. to publish the report
        self._stream = stream or sys.stderr
        self._is_terminal = bool(getattr(self._stream, "isatty", lambda: False)())
        self._clock = clock
        self._started = clock()
        self._last_drawn = self._started
        self._last_logged = self._started

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.done >= self.total:
            return  # close() shows the final state once
        now = self._clock()
        if self._is_terminal and now - self._last_drawn >= BAR_INTERVAL_SECONDS:
            self._last_drawn = now
            self._draw_bar()
        if now - self._last_logged >= LOG_INTERVAL_SECONDS:
            self._last_logged = now
            message = self.summary()
            if not self._is_terminal:
                log.info("%s", message)
            if self._on_update:
                self._on_update(message)

    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def summary(self) -> str:
        rate = self.rate()
        eta = (self.total - self.done) / rate if rate > 0 else None
        percent = 100.0 * self.done / self.total if self.total else 100.0
        eta_text = f", eta {_duration(eta)}" if eta is not None and self.done < self.total else ""
        return f"{self.label}: {self.done}/{self.total} ({percent:.1f}%), {rate:.1f}/s{eta_text}"

    def close(self) -> None:
        if self._is_terminal:
            self._draw_bar()
            self._stream.write("\n")
            self._stream.flush()
        log.info("%s", self.summary())

    def _draw_bar(self) -> None:
        filled = int(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
        self._stream.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.summary()}")
        self._stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
