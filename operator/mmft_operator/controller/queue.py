"""One reconcile at a time per resource: triggers arriving meanwhile coalesce into one more pass; failures retry
with backoff.

Events of a child and of its owner arrive on different kopf workers: serialising per resource keeps two passes from
racing on one status, and a burst of child events (a Job, its pod, its ConfigMaps) costs at most one extra pass
instead of one per event.
"""

from __future__ import annotations

import threading
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
