"""A proxy that stops a client's writes at a chosen point, so a test can SIGKILL it between two exact writes.

Writes (POST, PUT, PATCH, DELETE; Events included) are counted per namespace. In a namespace given a cut point N,
the first N writes are forwarded and write N+1 and every later one are held: never forwarded, never answered, until
`release`. Reads and watches always pass. Namespaces without a cut point pass everything and are only counted.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fault_proxy import NO_ANSWER, ApiProxy, ProxiedRequest, Reply


@dataclass(frozen=True)
class Write:
    method: str
    resource: str
    status: int

    def __str__(self) -> str:
        return f"{self.method} {self.resource} -> {self.status}"


class CrashPointProxy(ApiProxy):
    def __init__(self, upstream_kubeconfig: Path) -> None:
        super().__init__(upstream_kubeconfig)
        self._counts: dict[str, int] = defaultdict(int)
        self._cuts: dict[str, int] = {}
        self._gates: dict[str, threading.Event] = {}
        self.forwarded_writes: dict[str, list[Write]] = defaultdict(list)
        self.held: dict[str, list[ProxiedRequest]] = defaultdict(list)
        self.last_write_at: dict[str, float] = {}

    def cut_after(self, namespace: str, writes: int) -> None:
        """Forward `writes` writes in `namespace`, then hold every later one."""
        with self.lock:
            self._cuts[namespace] = self._counts[namespace] + writes
            self._gates[namespace] = threading.Event()

    def release(self, namespace: str) -> None:
        """Held writes of `namespace` end unanswered (their client is dead by now); later ones pass."""
        with self.lock:
            self._cuts.pop(namespace, None)
            gate = self._gates.pop(namespace, None)
        if gate is not None:
            gate.set()

    def first_held(self, namespace: str) -> ProxiedRequest | None:
        with self.lock:
            return self.held[namespace][0] if self.held[namespace] else None

    def writes(self, namespace: str) -> list[Write]:
        with self.lock:
            return list(self.forwarded_writes[namespace])

    def intercept(self, request: ProxiedRequest) -> Reply | None:
        namespace = request.namespace
        if not request.mutating or namespace is None:
            return None
        with self.lock:
            cut = self._cuts.get(namespace)
            if cut is None or self._counts[namespace] < cut:
                self._counts[namespace] += 1
                return None
            self.held[namespace].append(request)
            gate = self._gates[namespace]
        gate.wait()
        return NO_ANSWER

    def forwarded(self, request: ProxiedRequest, status: int) -> None:
        if request.mutating and request.namespace is not None:
            with self.lock:
                self.forwarded_writes[request.namespace].append(Write(request.method, request.resource, status))
                self.last_write_at[request.namespace] = time.monotonic()

    def quiet_for(self, namespace: str) -> float:
        """Seconds since the last forwarded write in `namespace` (infinite when none was ever forwarded)."""
        with self.lock:
            last = self.last_write_at.get(namespace)
        return float("inf") if last is None else time.monotonic() - last
