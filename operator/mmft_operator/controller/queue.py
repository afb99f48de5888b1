"""One reconcile at a time per resource: triggers arriving meanwhile coalesce into one more pass; failures retry
with backoff.

Events of a child and of its owner arrive on different kopf workers: serialising per resource keeps two passes from
racing on one status, and a burst of child events (a Job, its pod, its ConfigMaps) costs at most one extra pass
instead of one per event.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

Key = tuple[str, str, str]  # kind, namespace, name
# The work for one key: (key, verify_children, retrying). Raises to ask for a retry with backoff.
Work = Callable[[Key, bool, bool], None]

MAX_BACKOFF_SECONDS = 30.0


class WorkQueue:
    def __init__(self, work: Work) -> None:
        self._work = work
        self._guard = threading.Lock()
        self._running: set[Key] = set()
        # Triggers that arrived while the key was being worked on; value: whether any asked to verify children.
        self._pending: dict[Key, bool] = {}
        self._failures: dict[Key, int] = {}
        # Keys to submit at a later time (monotonic seconds), and the thread that does it once one is asked for.
        self._later: dict[Key, float] = {}
        self._due: list[tuple[float, Key]] = []
        self._later_changed = threading.Condition()
        self._later_thread: threading.Thread | None = None

    def submit(self, key: Key, verify_children: bool = False) -> None:
        """Run the work for `key` on the calling thread, or leave a note for the pass already running it."""
        with self._guard:
            if key in self._running:
                self._pending[key] = self._pending.get(key, False) or verify_children
                return
            self._running.add(key)
        try:
            while True:
                try:
                    self._work(key, verify_children, key in self._failures)
                    self._failures.pop(key, None)
                except Exception as error:  # noqa: BLE001 - the work logs and counts its own failures
                    self._retry_later(key, error)
                with self._guard:
                    if key not in self._pending:
                        break
                    verify_children = self._pending.pop(key)
        finally:
            with self._guard:
                self._running.discard(key)
                self._pending.pop(key, None)

    def submit_after(self, key: Key, seconds: float) -> None:
        """Submit `key` once `seconds` have passed (a grace period running out). One thread waits for all of them,
        whatever their number; a key already due earlier keeps its earlier time."""
        due = time.monotonic() + max(0.0, seconds)
        with self._later_changed:
            if self._later.get(key, float("inf")) <= due:
                return
            self._later[key] = due
            heapq.heappush(self._due, (due, key))
            if self._later_thread is None:
                self._later_thread = threading.Thread(target=self._submit_when_due, name="mmft-recheck", daemon=True)
                self._later_thread.start()
            self._later_changed.notify()

    def _submit_when_due(self) -> None:
        while True:
            with self._later_changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._later_changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                due, key = heapq.heappop(self._due)
                if self._later.get(key) != due:
                    continue  # superseded by an earlier time for the same key
                del self._later[key]
            self.submit(key)

    def backoff_seconds(self, key: Key, error: Exception) -> float:
        """Exponential (1 s doubling to 30 s), or the API server's Retry-After when it asks for longer."""
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (self._failures.get(key, 1) - 1))
        return max(delay, float(getattr(error, "retry_after", 0) or 0))

    def _retry_later(self, key: Key, error: Exception) -> None:
        self._failures[key] = self._failures.get(key, 0) + 1
        timer = threading.Timer(self.backoff_seconds(key, error), self.submit, args=(key,))
        timer.daemon = True
        timer.start()
