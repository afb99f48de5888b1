"""Prometheus metrics of the operator (served by `mmft operator --metrics-port`)."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry()
# The process's own CPU seconds, resident memory and open file descriptors (process_*), for the alerts and dashboards
# of deploy/monitoring.
ProcessCollector(registry=REGISTRY)

RECONCILES = Counter(
    "mmft_reconciles_total", "Reconciles by kind and result (ok, error).", ["kind", "result"], registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "mmft_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class ResourceStates:
    """Last status seen per resource, exported as gauges computed at scrape time (no stale series to clean)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str, str], dict[str, Any]] = {}

    def record(self, kind: str, namespace: str, name: str, status: dict[str, Any] | None) -> None:
        with self._lock:
            if status is None:
                self._states.pop((kind, namespace, name), None)
            else:
                self._states[(kind, namespace, name)] = status

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        with self._lock:
            states = dict(self._states)
        conditions = GaugeMetricFamily(
            "mmft_resources", "Resources by kind and condition status.", labels=["kind", "condition", "status"]
        )
        counts: dict[tuple[str, str, str], int] = {}
        for (kind, _namespace, _name), status in states.items():
            for condition in status.get("conditions", []):
                key = (kind, condition["type"], condition["status"])
                counts[key] = counts.get(key, 0) + 1
        for key, count in sorted(counts.items()):
            conditions.add_metric(list(key), count)
        yield conditions
        step = GaugeMetricFamily("mmft_training_step", "Optimizer steps done.", labels=["namespace", "name"])
        total = GaugeMetricFamily("mmft_training_total_steps", "Optimizer steps planned.", labels=["namespace", "name"])
        loss = GaugeMetricFamily(
            "mmft_training_loss", "Training loss at the last logging step.", labels=["namespace", "name"]
        )
        for (kind, namespace, name), status in sorted(states.items()):
            progress = status.get("progress") or {}
            if kind != "FineTuneJob" or not progress:
                continue
            step.add_metric([namespace, name], progress.get("step", 0))
            if progress.get("totalSteps") is not None:
                total.add_metric([namespace, name], progress["totalSteps"])
            if progress.get("loss") is not None:
                loss.add_metric([namespace, name], progress["loss"])
        yield from (step, total, loss)


RESOURCE_STATES = ResourceStates()
REGISTRY.register(RESOURCE_STATES)
