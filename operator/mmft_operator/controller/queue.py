"""One reconcile at a time per resource: triggers arriving meanwhile coalesce into one more pass; failures retry
with backoff.

Events of a child and of its owner arrive on different kopf workers: serialising per resource keeps two passes from
racing on one status, and a burst of child events (a Job, its pod, its ConfigMaps) costs at most one extra pass
instead of one per event.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

Key = tuple[str, str, str]  # kind, namespace, name
# The work for one key: (key, verify_children, retrying). Raises to ask for a retry with backoff.
Work = Callable[[Key, bool, bool], None]

MAX_BACKOFF_SECONDS = 30.0
log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, work: Work) -> None:
        self._work = work
        self._guard = threading.Lock()
        self._running: set[Key] = set()
        # Triggers that arrived while the key was being worked on; value: whether any asked to verify children.
        self._pending: dict[Key, bool] = {}
        self._failures: dict[Key, int] = {}
        self._delayed = DelayedSubmits(self.submit)

    def submit_after(self, key: Key, seconds: float) -> None:
        """Submit `key` once `seconds` have passed (a planner's requeue_at: a retained child's TTL or a grace period
        runs out)."""
        self._delayed.after(key, seconds)

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

    def backoff_seconds(self, key: Key, error: Exception) -> float:
        """Exponential (1 s doubling to 30 s), or the API server's Retry-After when it asks for longer."""
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** (self._failures.get(key, 1) - 1))
        return max(delay, float(getattr(error, "retry_after", 0) or 0))

    def _retry_later(self, key: Key, error: Exception) -> None:
        self._failures[key] = self._failures.get(key, 0) + 1
        timer = threading.Timer(self.backoff_seconds(key, error), self.submit, args=(key,))
        timer.daemon = True
        timer.start()


class DelayedSubmits:
    """Submits each key when its time comes: one thread and a heap however many resources wait (every finished
    FineTuneJob waits up to a day for its TensorBoard's removal), instead of a timer thread each. A key waits once:
    an earlier time replaces a later one, and a later one is dropped, since the pass at the earlier time plans again.
    Due keys are submitted one after the other on this thread (WorkQueue.submit runs the work on its caller)."""

    def __init__(self, submit: Callable[[Key], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._submit = submit
        self._clock = clock
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, key: Key, seconds: float) -> None:
        when = self._clock() + max(0.0, seconds)
        with self._changed:
            if self._due.get(key, float("inf")) <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._changed.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mmft-requeue", daemon=True)
                self._thread.start()

    def pending(self) -> dict[Key, float]:
        """The keys waiting, with the seconds left until each."""
        with self._changed:
            now = self._clock()
            return {key: when - now for key, when in self._due.items()}

    def _next_due(self) -> Key:
        with self._changed:
            while True:
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # replaced by an earlier time
                now = self._clock()
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._changed.wait(self._heap[0][0] - now if self._heap else None)

    def _run(self) -> None:
        while True:
            key = self._next_due()
            try:
                self._submit(key)
            except Exception:  # noqa: BLE001 - never let one resource stop the others' requeues
                log.exception("requeue of %s failed", key)
