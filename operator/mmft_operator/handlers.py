"""kopf wiring: every watch event becomes a level-triggered reconcile of the mmft resource it concerns.

Declarations only: each handler finds which resource an event is about and hands over to the controller runtime
(`controller/runtime.py`). Only `on.event` and indexes are used, so kopf itself writes nothing to our objects (no
progress annotations, no finalizers).
"""

from __future__ import annotations

from typing import Any

import kopf

from mmft_operator.api.common import GROUP, VERSION
from mmft_operator.api.kinds import ALL_KINDS
from mmft_operator.controller import kopf_integration, watch_cache
from mmft_operator.controller.kopf_integration import MANAGED
from mmft_operator.controller.runtime import Runtime
from mmft_operator.settings import OperatorSettings

RUNTIME = Runtime()


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kopf_integration.connection_info(RUNTIME.load_connection())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    kopf_integration.configure(settings)
    RUNTIME.start(OperatorSettings.from_environment())


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    RUNTIME.stop()


@kopf.on.probe(id="reconcilers")
def reconcilers_ready(**_: Any) -> bool:
    return RUNTIME.started


@kopf.index(GROUP, VERSION, "finetunejobs")
def finetunejobs_by_dataset(namespace: str, name: str, spec: kopf.Spec, **_: Any):
    return kopf_integration.finetunejob_dependencies(namespace, name, spec)


@kopf.index(GROUP, VERSION, "evaluations")
def evaluations_by_dependency(namespace: str, name: str, spec: kopf.Spec, **_: Any):
    return kopf_integration.evaluation_dependencies(namespace, name, spec)


# The watch cache (controller/watch_cache.py): kopf runs no handler before these indexes hold their initial listing.
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


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def managed_deployments(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.deployment_entry(body)}


# Warning events only (kopf_integration.configure's field selector); the index keeps start-failure reasons only.
@kopf.index("", "v1", "events")
def start_failure_events(body: kopf.Body, **_: Any):
    entry = watch_cache.event_entry(body)
    return {entry[0]: entry[1]} if entry is not None else None


@kopf.index("", "v1", "serviceaccounts")
def service_accounts(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.service_account_entry(body)}


@kopf.on.event("", "v1", "events")
def warning_event(type: str | None, body: kopf.Body, **indexes: Any) -> None:
    RUNTIME.attach_cache(indexes)
    entry = watch_cache.event_entry(body) if type in ("ADDED", "MODIFIED") else None
    if entry is not None:
        namespace, kind, name = entry[0]
        RUNTIME.warning_event(namespace, kind, name)


@kopf.on.event("", "v1", "serviceaccounts")
def service_account_changed(type: str | None, namespace: str, name: str, **indexes: Any) -> None:
    RUNTIME.attach_cache(indexes)
    if type is not None:  # not the initial listing: every owner's own listing event reads it from the cache
        RUNTIME.service_account_changed(namespace, name)


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
        RUNTIME.attach_cache(indexes)
        if type != "DELETED" and not RUNTIME.is_echo(kind, body):
            RUNTIME.reconcile(kind, namespace, name)
        # Resources waiting on this one re-check now instead of at the next resync.
        if kind == "DatasetPrep":
            for dependent in finetunejobs_by_dataset.get((namespace, name), []):
                RUNTIME.reconcile("FineTuneJob", namespace, dependent)
        for dependent in evaluations_by_dependency.get((kind, namespace, name), []):
            RUNTIME.reconcile("Evaluation", namespace, dependent)

    return handler


def _owner_entry(namespace: str, name: str, body: kopf.Body, **_: Any):
    return {(namespace, name): watch_cache.owner_entry(body)}


for _info in ALL_KINDS:
    kopf.on.event(GROUP, VERSION, _info.plural, id=f"{_info.singular}-event")(_on_owner(_info.kind))
    # Owners are read from the watch too (the reconcile's first read); a conflicting write reads the API again.
    kopf.index(GROUP, VERSION, _info.plural, id=f"owners_{_info.singular}")(_owner_entry)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
@kopf.on.event("", "v1", "configmaps", labels=MANAGED)
def child_changed(type: str | None, namespace: str, labels: dict[str, str], body: kopf.Body, **indexes: Any) -> None:
    RUNTIME.attach_cache(indexes)
    if type is None:
        # The initial listing after a start: the owner's own listing event reconciles it, reading this child from
        # the cache. Reacting here too made a restart reconcile every resource once per child (five times).
        return
    owner = kopf_integration.owner_of_child(labels)
    if owner is not None and not RUNTIME.is_echo(body.get("kind", ""), body):
        RUNTIME.reconcile(owner[0], namespace, owner[1])
