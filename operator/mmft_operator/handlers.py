"""kopf wiring: every watch event becomes a level-triggered reconcile of the mmft resource it concerns.

Handlers are thin: find which resource an event is about, then hand over to `reconcile.engine`. Only `on.event`
and timers are used, so kopf itself writes nothing to our objects (no progress annotations, no finalizers).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from mmft_operator import kopf_scaling, metrics, naming, watch_cache
from mmft_operator.api.common import API_VERSION, GROUP, VERSION
from mmft_operator.api.kinds import ALL_KINDS, BY_KIND
from mmft_operator.connection import Connection
from mmft_operator.kube import ApiError, Kube
from mmft_operator.leader import LeaderLease
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.engine import Context, KindReconciler, reconcile
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from mmft_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
RESYNC_SECONDS = 300.0
LISTING_PAGE = 200
MANAGED = {"app.kubernetes.io/managed-by": naming.MANAGED_BY}
MANAGED_SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED.items())
# The children the operator watches (group, version, plural): the watch cache and the triggers of their owners.
CHILD_RESOURCES = [("batch", "v1", "jobs"), ("", "v1", "pods"), ("", "v1", "configmaps")]
RECONCILERS: dict[str, KindReconciler] = {
    "DatasetPrep": DatasetPrepReconciler(),
    "FineTuneJob": FineTuneJobReconciler(),
    "Evaluation": EvaluationReconciler(),
}
_KIND_BY_LABEL = {info.kind.lower(): info.kind for info in ALL_KINDS}


class _Runtime:
    connection: Connection | None = None
    context: Context | None = None
    guard = threading.Lock()
    running: set[tuple[str, str, str]] = set()
    # Triggers that arrived while the resource was being reconciled; value: whether any asked to verify children.
    pending: dict[tuple[str, str, str], bool] = {}
    namespaces: list[str] = []
    stop = threading.Event()
    lease: LeaderLease | None = None
    failures: dict[tuple[str, str, str], int] = {}


def reconcile_resource(kind: str, namespace: str, name: str, verify_children: bool = False) -> None:
    """Reconcile one resource; triggers arriving meanwhile collapse into one more pass; failures retry with backoff.

    Events of a child and of its owner arrive on different workers: one pass at a time per resource, and a burst of
    child events (a Job, its pod, its ConfigMaps) costs at most one extra pass instead of one per event.
    """
    key = (kind, namespace, name)
    with _Runtime.guard:
        if key in _Runtime.running:
            _Runtime.pending[key] = _Runtime.pending.get(key, False) or verify_children
            return
        _Runtime.running.add(key)
    try:
        while True:
            try:
                _reconcile_measured(kind, namespace, name, verify_children)
                _Runtime.failures.pop(key, None)
            except Exception as error:  # noqa: BLE001 - logged and counted in _reconcile_measured
                _retry_later(key, error)
            with _Runtime.guard:
                if key not in _Runtime.pending:
                    break
                verify_children = _Runtime.pending.pop(key)
    finally:
        with _Runtime.guard:
            _Runtime.running.discard(key)
            _Runtime.pending.pop(key, None)


def _retry_later(key: tuple[str, str, str], error: Exception) -> None:
    """Exponential backoff (1 s doubling to 30 s), or the API server's Retry-After when it asks for longer."""
    attempt = _Runtime.failures.get(key, 0) + 1
    _Runtime.failures[key] = attempt
    delay = min(30.0, 2.0 ** (attempt - 1))
    delay = max(delay, float(getattr(error, "retry_after", 0) or 0))
    timer = threading.Timer(delay, reconcile_resource, args=key)
    timer.daemon = True
    timer.start()


def _reconcile_measured(kind: str, namespace: str, name: str, verify_children: bool) -> None:
    started = time.perf_counter()
    try:
        retrying = (kind, namespace, name) in _Runtime.failures
        status = reconcile(_Runtime.context, RECONCILERS[kind], namespace, name, verify_children, retrying)
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
    metrics.RESOURCE_STATES.record(kind, namespace, name, status)


def _connection() -> Connection:
    if _Runtime.connection is None:
        _Runtime.connection = Connection.load()
    return _Runtime.connection


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's watches use the same credentials as the operator's own calls (kopf asks again after a 401)."""
    connection = _connection()
    return kopf.ConnectionInfo(
        server=connection.server,
        ca_path=connection.ca_file,
        insecure=connection.insecure,
        certificate_path=connection.cert_file,
        private_key_path=connection.key_file,
        token=connection.bearer_token(),
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Kopf turns log lines into Events at this level or above; our own transitions are posted explicitly.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 16
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    # Handlers' label filters are applied by kopf in the client: without these selectors it lists and watches every
    # pod and ConfigMap of the cluster, keeps a memory for each and holds start-up until all are indexed.
    for children in CHILD_RESOURCES:
        settings.watching.label_selectors[children] = MANAGED_SELECTOR
    # The initial listing in pages: a page's bodies lose their managedFields (kopf_scaling) before the next is read,
    # instead of all 2,000 pods of a listing being parsed at once, managedFields and all.
    settings.watching.chunk_size = LISTING_PAGE
    operator_settings = OperatorSettings.from_environment()
    if operator_settings.metrics_port:
        start_http_server(operator_settings.metrics_port, registry=metrics.REGISTRY)
    kube = Kube(_connection())
    if operator_settings.lease_namespace:
        _Runtime.lease = _become_leader(kube, operator_settings)
    _Runtime.context = Context(kube, operator_settings)
    _Runtime.namespaces = operator_settings.watch_namespaces()
    threading.Thread(target=_resync_forever, args=(_Runtime.stop,), name="mmft-resync", daemon=True).start()
    threading.Thread(
        target=kopf_scaling.collect_garbage_forever, args=(_Runtime.stop,), name="mmft-gc", daemon=True
    ).start()


def _become_leader(kube: Kube, operator_settings: OperatorSettings) -> LeaderLease:
    """Block until this replica holds the Lease (kopf starts watching only after start-up handlers return)."""
    identity = f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaderLease(
        kube, operator_settings.lease_namespace, "mmft-operator", identity, operator_settings.lease_duration_seconds
    )
    while not lease.try_acquire_or_renew():
        log.info("standby: another replica holds the leader lease; retrying")
        time.sleep(operator_settings.lease_duration_seconds / 5)
    log.info("leader: %s holds lease %s/mmft-operator", identity, operator_settings.lease_namespace)
    threading.Thread(target=_renew_forever, args=(lease, _Runtime.stop), name="mmft-lease", daemon=True).start()
    return lease


def _renew_forever(lease: LeaderLease, stop: threading.Event) -> None:
    last_renewed = time.monotonic()
    while not stop.wait(lease.duration_seconds / 3):
        try:
            if lease.try_acquire_or_renew():
                last_renewed = time.monotonic()
                continue
            reason = "another replica took the lease"
        except Exception as error:  # noqa: BLE001 - judged by how long renewals have been failing
            reason = f"renewal failed: {error}"
        if reason.startswith("another") or time.monotonic() - last_renewed > lease.duration_seconds * 2 / 3:
            # Stop acting before anyone else may: exiting is the only way to stop kopf's workers at once.
            log.error("leader lease lost (%s); exiting so that only one replica writes", reason)
            os._exit(1)


@kopf.on.cleanup()
def stop_resync(**_: Any) -> None:
    _Runtime.stop.set()
    if _Runtime.lease is not None:
        _Runtime.lease.release()  # a standby takes over at once instead of after the lease expires


@kopf.on.probe(id="reconcilers")
def reconcilers_ready(**_: Any) -> bool:
    return _Runtime.context is not None


@kopf.index(GROUP, VERSION, "finetunejobs")
def finetunejobs_by_dataset(namespace: str, name: str, spec: kopf.Spec, **_: Any):
    ref = (spec.get("dataset") or {}).get("datasetPrepRef")
    return {(namespace, ref["name"]): name} if ref else None


@kopf.index(GROUP, VERSION, "evaluations")
def evaluations_by_dependency(namespace: str, name: str, spec: kopf.Spec, **_: Any):
    keys = {}
    ref = (spec.get("dataset") or {}).get("datasetPrepRef")
    if ref:
        keys[("DatasetPrep", namespace, ref["name"])] = name
    for model in spec.get("models") or []:
        job_ref = model.get("fineTuneJobRef")
        if job_ref:
            keys[("FineTuneJob", namespace, job_ref["name"])] = name
    return keys or None


# The watch cache (watch_cache.py): kopf runs no handler before these indexes hold their initial listing.
@kopf.index("batch", "v1", "jobs", labels=MANAGED)
def managed_jobs(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.job_entry(body)}


@kopf.index("", "v1", "pods", labels=MANAGED)
def managed_job_pods(namespace: str, labels: dict[str, str], body: kopf.Body, **_: Any):
    job_name = labels.get("batch.kubernetes.io/job-name")
    return {(namespace, job_name): watch_cache.pod_entry(body)} if job_name else None


@kopf.index("", "v1", "configmaps", labels=MANAGED)
def workload_reports(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.report_entry(body)} if watch_cache.is_report(name) else None


def _attach_cache(indexes: dict[str, Any]) -> None:
    cache = _Runtime.context.cache
    if not cache.ready:
        owners = {info.kind: indexes[f"owners_{info.singular}"] for info in ALL_KINDS}
        cache.attach(indexes["managed_jobs"], indexes["managed_job_pods"], indexes["workload_reports"], owners)


def _echo(kind: str, body: kopf.Body) -> bool:
    """The event shows the version this operator itself just wrote: nothing new to react to."""
    meta = body.get("metadata", {})
    return _Runtime.context.kube.is_own_write(
        kind, meta.get("namespace", ""), meta.get("name", ""), meta.get("resourceVersion", "")
    )


def _on_owner(kind: str):
    def handler(
        type: str,
        namespace: str,
        name: str,
        body: kopf.Body,
        finetunejobs_by_dataset: kopf.Index,
        evaluations_by_dependency: kopf.Index,
        **indexes: Any,
    ) -> None:
        _attach_cache(indexes)
        if type != "DELETED" and not _echo(kind, body):
            reconcile_resource(kind, namespace, name)
        # Resources waiting on this one re-check now instead of at the next resync.
        if kind == "DatasetPrep":
            for dependent in finetunejobs_by_dataset.get((namespace, name), []):
                reconcile_resource("FineTuneJob", namespace, dependent)
        for dependent in evaluations_by_dependency.get((kind, namespace, name), []):
            reconcile_resource("Evaluation", namespace, dependent)

    return handler


def _owner_entry(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.owner_entry(body)}


for _info in ALL_KINDS:
    kopf.on.event(GROUP, VERSION, _info.plural, id=f"{_info.singular}-event")(_on_owner(_info.kind))
    # Owners are read from the watch too (the reconcile's first read); a conflicting write reads the API again.
    kopf.index(GROUP, VERSION, _info.plural, id=f"owners_{_info.singular}")(_owner_entry)


def _resync_forever(stop: threading.Event) -> None:
    """Re-verify every resource and its children now and then: catches a deleted child, a missed event, a grace
    period running out. A thread of our own instead of kopf timers, which would put a finalizer on every resource."""
    while not stop.wait(RESYNC_SECONDS):
        for info in ALL_KINDS:
            try:
                items = _Runtime.context.kube.list_all(API_VERSION, info.kind, _Runtime.namespaces)
            except Exception:  # noqa: BLE001 - the next round retries; the watches keep working meanwhile
                log.exception("resync: could not list %s", info.plural)
                continue
            for item in items:
                meta = item["metadata"]
                try:
                    reconcile_resource(info.kind, meta["namespace"], meta["name"], verify_children=True)
                except Exception:  # noqa: BLE001, S110 - logged and counted by reconcile_resource
                    continue


def _owner_of_child(labels: dict[str, str]) -> tuple[str, str] | None:
    kind = _KIND_BY_LABEL.get(labels.get(naming.OWNER_KIND_LABEL, ""))
    name = labels.get(naming.OWNER_NAME_LABEL)
    return (kind, name) if kind in BY_KIND and name else None


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
def child_changed(type: str | None, namespace: str, labels: dict[str, str], body: kopf.Body, **indexes: Any) -> None:
    _attach_cache(indexes)
    if type is None:
        # The initial listing after a start: the owner's own listing event reconciles it, reading this child from
        # the cache. Reacting here too made a restart reconcile every resource once per child (five times).
        return
    owner = _owner_of_child(labels)
    if owner is not None and not _echo(body.get("kind", ""), body):
        reconcile_resource(owner[0], namespace, owner[1])
