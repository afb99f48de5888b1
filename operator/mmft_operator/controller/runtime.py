"""The running operator as one object: connection, watch cache, work queue, leader lease and background threads.

Created once by `handlers.py` and started by kopf's start-up handler; every handler calls into it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import start_http_server

from mmft_operator import metrics
from mmft_operator.api.kinds import ALL_KINDS
from mmft_operator.connection import Connection
from mmft_operator.kube import ApiError, Kube
from mmft_operator.reconcile.kinds import RECONCILERS
from mmft_operator.settings import OperatorSettings

from . import apply, kopf_integration, kopf_patches
from .leader import LeaderLease, become_leader
from .observe import Observer
from .queue import Key, WorkQueue
from .resync import resync_forever
from .watch_cache import WatchCache

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.clock = clock
        self.connection: Connection | None = None
        self.settings: OperatorSettings | None = None
        self.observer: Observer | None = None  # set once started: the handlers' readiness
        self.cache = WatchCache()
        self.queue = WorkQueue(self._reconcile_measured)
        self.stop_event = threading.Event()
        self.lease: LeaderLease | None = None

    def load_connection(self) -> Connection:
        if self.connection is None:
            self.connection = Connection.load()
        return self.connection

    @property
    def started(self) -> bool:
        return self.observer is not None

    def start(self, settings: OperatorSettings) -> None:
        """Metrics endpoint, leader election (blocks while standby), then the resync and collection threads."""
        if settings.metrics_port:
            start_http_server(settings.metrics_port, registry=metrics.REGISTRY)
        kube = Kube(self.load_connection())
        if settings.lease_namespace:
            self.lease = become_leader(kube, settings.lease_namespace, settings.lease_duration_seconds,
                                       self.stop_event)
        self.settings = settings
        self.observer = Observer(kube, self.cache)
        threading.Thread(
            target=resync_forever, args=(kube, settings.watch_namespaces(), self.queue.submit, self.stop_event),
            name="mmft-resync", daemon=True,
        ).start()
        threading.Thread(
            target=kopf_patches.collect_garbage_forever, args=(self.stop_event,), name="mmft-gc", daemon=True
        ).start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.lease is not None:
            self.lease.release()  # a standby takes over at once instead of after the lease expires

    def attach_cache(self, indexes: Mapping[str, Any]) -> None:
        """Hand kopf's indexes to the watch cache the first time a handler sees them."""
        if not self.cache.ready:
            owners = {info.kind: indexes[f"owners_{info.singular}"] for info in ALL_KINDS}
            self.cache.attach(indexes["managed_jobs"], indexes["managed_job_pods"], indexes["workload_reports"],
                              owners, indexes["start_failure_events"], indexes["managed_deployments"],
                              indexes["service_accounts"])

    def warning_event(self, namespace: str, kind: str, name: str) -> None:
        """A start-failure Warning event about a Job or pod: reconcile the mmft resource it belongs to, if any.
        Events carry no labels: the owner comes from the watched Job's labels."""
        if kind == "Job":
            labels = ((self.cache.job(namespace, name) or {}).get("metadata") or {}).get("labels")
        else:
            labels = self.cache.owner_of_pod(namespace, name)
        owner = kopf_integration.owner_of_child(labels or {})
        if owner is not None:
            self.reconcile(owner[0], namespace, owner[1])

    def service_account_changed(self, namespace: str, name: str) -> None:
        """The Workload Identity condition of every resource running as this ServiceAccount may change."""
        for kind, owner in self.cache.owners_using_service_account(namespace, name):
            self.reconcile(kind, namespace, owner)

    def is_echo(self, kind: str, body: Mapping[str, Any]) -> bool:
        """The event shows the version this operator itself just wrote: nothing new to react to."""
        meta = body.get("metadata", {})
        return self.observer.kube.is_own_write(
            kind, meta.get("namespace", ""), meta.get("name", ""), meta.get("resourceVersion", "")
        )

    def reconcile(self, kind: str, namespace: str, name: str, verify_children: bool = False) -> None:
        self.queue.submit((kind, namespace, name), verify_children)

    def _reconcile_measured(self, key: Key, verify_children: bool, retrying: bool) -> None:
        kind, namespace, name = key
        started = time.perf_counter()
        try:
            planned = apply.reconcile(self.observer, RECONCILERS[kind], self.settings, self.clock, namespace, name,
                                      verify_children, retrying)
        except ApiError as error:
            metrics.RECONCILES.labels(kind, "error").inc()
            log.warning("%s %s/%s: reconcile failed, retrying: %s", kind, namespace, name, error)
            raise
        except Exception:
            metrics.RECONCILES.labels(kind, "error").inc()
            log.exception("%s %s/%s: reconcile failed, retrying", kind, namespace, name)
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.RECONCILES.labels(kind, "ok").inc()
        metrics.RESOURCE_STATES.record(kind, namespace, name, planned.status if planned is not None else None)
        if planned is not None and planned.requeue_at is not None:
            self.queue.submit_after(key, (planned.requeue_at - self.clock()).total_seconds())
