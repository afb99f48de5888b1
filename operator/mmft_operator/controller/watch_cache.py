"""What the operator already watches, read back instead of asked for again: owners, Jobs, pods, reports.

Every reconcile used to GET the Job, LIST its pods and GET the report ConfigMap, although kopf streams every change
of those objects to the operator anyway. At 200 FineTuneJobs that was 30 of 45 API calls per resource, and the API
server, not the operator, was what a burst waited for. kopf keeps these in indexes (``handlers.py``) and, by design,
runs no handler before every index holds its initial listing, so a reconcile never sees a half-filled cache.

Entries are small projections: the fields the reconcile loop and the verdict read, not whole objects (a Job's pod
template, a pod's spec and managedFields would otherwise dominate the operator's memory at 1,000 resources).
Writes are never based on these reads alone: a patch carries the resourceVersion read here, so a stale entry
costs one 409 and a fresh read, never a lost update.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

from mmft_operator import naming
from mmft_operator.status.identity import GCP_SERVICE_ACCOUNT_ANNOTATION
from mmft_operator.status.workload import START_FAILURE_EVENT_REASONS, WorkloadEvent

REPORT_SUFFIX = "-report"
# kopf's index stores may change size while a worker thread reads them: retry the read instead of failing it.
_READ_ATTEMPTS = 5


def job_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _pick(meta, "name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels",
                          "annotations", "ownerReferences"),
        "spec": _pick(body.get("spec", {}), "suspend", "ttlSecondsAfterFinished"),
        "status": dict(body.get("status") or {}),
    }


def pod_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    # The Job's UID label only: a replaced Job's terminating pods share its name (reconcile/lifecycle.py pods_of).
    uid_label = _pick(meta.get("labels") or {}, naming.JOB_CONTROLLER_UID_LABEL)
    return {
        # The Job's UID label and ownerReferences: a replaced or deleted Job's pods, still terminating, share its name.
        "metadata": {**_pick(meta, "name", "uid", "creationTimestamp", "deletionTimestamp", "ownerReferences"),
                     **({"labels": uid_label} if uid_label else {})},
        "status": dict(body.get("status") or {}),
    }


def report_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _pick(body.get("metadata", {}), "name", "ownerReferences"),
        "data": dict(body.get("data") or {}),
    }


def deployment_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A child Deployment (TensorBoard): whether it is available, as its controller reports it."""
    return {
        "metadata": _pick(body.get("metadata", {}), "name", "uid", "generation", "ownerReferences"),
        "status": _pick(body.get("status") or {}, "observedGeneration", "replicas", "availableReplicas",
                        "conditions"),
    }


def service_account_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ServiceAccount: only the Workload Identity annotation is read (status/identity.py)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    return {"metadata": {"name": body.get("metadata", {}).get("name"),
                         "annotations": _pick(annotations, GCP_SERVICE_ACCOUNT_ANNOTATION)}}


def event_entry(body: Mapping[str, Any]) -> tuple[tuple[str, str, str], WorkloadEvent] | None:
    """A Warning event that says a workload pod cannot start (FailedCreate on a Job, FailedMount or
    FailedAttachVolume on a pod), keyed by (namespace, kind, name) of the object it is about; None for any other.

    Both event APIs land here: core/v1 fields (involvedObject, first/lastTimestamp, count) as the kubelet and the
    Job controller write them, and events.k8s.io's (eventTime, series) as read through core/v1."""
    involved = body.get("involvedObject") or {}
    kind = involved.get("kind")
    if body.get("reason") not in START_FAILURE_EVENT_REASONS or kind not in ("Job", "Pod"):
        return None
    series = body.get("series") or {}
    first = body.get("firstTimestamp") or body.get("eventTime") or ""
    last = body.get("lastTimestamp") or series.get("lastObservedTime") or first
    event = WorkloadEvent(kind=kind, name=involved.get("name", ""), uid=involved.get("uid", ""),
                          reason=body["reason"], message=body.get("message") or "",
                          first_seen=_seconds(first), last_seen=_seconds(last))
    namespace = involved.get("namespace") or body.get("metadata", {}).get("namespace", "")
    return (namespace, kind, event.name), event


def _seconds(stamp: str) -> str:
    """RFC 3339 to whole seconds (an events.k8s.io MicroTime has microseconds), as the verdict compares them."""
    return f"{stamp[:19]}Z" if len(stamp) >= 19 else stamp


def owner_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": _pick(
            meta, "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
            "deletionTimestamp", "labels", "annotations",
        ),
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


def slim(group: str, plural: str, body: dict[str, Any]) -> None:
    """Drop, in place and as the watch event arrives, what neither kopf nor these entries read from a watched child.

    kopf holds every listed body until all indexes are filled, so at a restart all of them are in memory at once:
    a pod's spec, a Job's pod template and the Axolotl YAML of a config ConfigMap were most of that.
    """
    if (group, plural) == ("", "pods"):
        body.pop("spec", None)
    elif (group, plural) == ("batch", "jobs"):
        body["spec"] = _pick(body.get("spec") or {}, "suspend", "ttlSecondsAfterFinished")
    elif (group, plural) == ("apps", "deployments"):
        body.pop("spec", None)
    elif (group, plural) == ("", "configmaps") and not is_report(body.get("metadata", {}).get("name", "")):
        body.pop("data", None)
        body.pop("binaryData", None)


def is_report(name: str) -> bool:
    return name.endswith(REPORT_SUFFIX)


def _newer(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """resourceVersions are etcd revisions in practice; anything else counts as not newer (the API decides)."""
    try:
        return int(one["metadata"]["resourceVersion"]) > int(other["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return False


def _pick(mapping: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: mapping[key] for key in keys if mapping.get(key) is not None}


class WatchCache:
    """Reads from kopf's indexes once handlers have handed them over; until then callers fall back to the API."""

    def __init__(self) -> None:
        self._indexes: tuple[Mapping, Mapping, Mapping] | None = None
        self._owners: dict[str, Mapping] = {}
        self._watched: tuple[Mapping, Mapping, Mapping] = ({}, {}, {})  # events, deployments, service accounts
        # The operator's own last status write per owner (and TTL patch per Job), until the watch shows it: a
        # reconcile triggered by a child right after a write would otherwise start from the state before it, and
        # its status patch would conflict (or its Job patch be sent again).
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._written_lock = threading.Lock()

    def attach(self, jobs: Mapping, pods: Mapping, reports: Mapping, owners: dict[str, Mapping] | None = None,
               events: Mapping | None = None, deployments: Mapping | None = None,
               service_accounts: Mapping | None = None) -> None:
        self._owners = owners or {}
        # `is None`, not `or`: an index that is empty now (no Warning event yet) is still the one kopf fills later.
        self._watched = tuple({} if index is None else index for index in (events, deployments, service_accounts))
        self._indexes = (jobs, pods, reports)

    @property
    def ready(self) -> bool:
        return self._indexes is not None

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job as last watched or patched by the operator, whichever is newer (a finished Job's TTL patch would
        otherwise be sent again by every pass until the watch shows it)."""
        watched = self._one(0, (namespace, name))
        if watched is None:
            with self._written_lock:
                self._written.pop(("Job", namespace, name), None)
            return None
        return self._newest(("Job", namespace, name), watched)

    def pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return self._read(lambda: list(self._indexes[1].get((namespace, job_name), [])))

    def report(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(2, (namespace, name))

    def events(self, namespace: str, kind: str, name: str) -> list[WorkloadEvent]:
        """The start-failure Warning events about the object (every uid: the verdict keeps the current one's)."""
        return self._read(lambda: list(self._watched[0].get((namespace, kind, name), [])))

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        entries = self._read(lambda: list(self._watched[1].get((namespace, name), [])))
        return entries[0] if entries else None

    def service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        entries = self._read(lambda: list(self._watched[2].get((namespace, name), [])))
        return entries[0] if entries else None

    def owner_of_pod(self, namespace: str, pod_name: str) -> dict[str, str] | None:
        """The labels of the Job that made the pod (they name its owner), or None for a pod not watched."""
        pods = self._read(lambda: [(key, list(store)) for key, store in self._indexes[1].items()])
        for (pod_namespace, job_name), entries in pods:
            if pod_namespace == namespace and any(entry["metadata"].get("name") == pod_name for entry in entries):
                job = self.job(namespace, job_name)
                return (job or {}).get("metadata", {}).get("labels")
        return None

    def owners_using_service_account(self, namespace: str, name: str) -> list[tuple[str, str]]:
        """(kind, name) of every watched resource in `namespace` whose pods run as ServiceAccount `name`."""
        found = []
        for kind, index in self._owners.items():
            owners = self._read(lambda index=index: [(key, list(store)) for key, store in index.items()])
            for (owner_namespace, owner_name), entries in owners:
                spec = (entries[0] if entries else {}).get("spec") or {}
                if owner_namespace == namespace and spec.get("serviceAccountName", "default") == name:
                    found.append((kind, owner_name))
        return found

    def owner(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the owner as last watched or written by the operator, whichever is newer; None if not watched
        (a missing or deleted owner is for the API to confirm)."""
        index = self._owners.get(kind)
        entries = self._read(lambda: list(index.get((namespace, name), []))) if index is not None else []
        key = (kind, namespace, name)
        if not entries:
            with self._written_lock:
                self._written.pop(key, None)
            return None
        return self._newest(key, entries[0])

    def wrote(self, body: Mapping[str, Any]) -> None:
        """Remember what a write returned (an owner's status, a Job's TTL) until the watch shows it."""
        meta = body.get("metadata", {})
        key = (body.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        if body.get("kind") in self._owners:
            entry = owner_entry(body)
        elif body.get("kind") == "Job":
            entry = job_entry(body)
        else:
            return
        with self._written_lock:
            self._written[key] = entry

    def _newest(self, key: tuple[str, str, str], watched: dict[str, Any]) -> dict[str, Any]:
        with self._written_lock:
            written = self._written.get(key)
            if written is not None and not _newer(written, watched):
                del self._written[key]  # the watch caught up
                written = None
        return copy.deepcopy(written or watched)

    def _one(self, which: int, key: tuple[str, str]) -> dict[str, Any] | None:
        entries = self._read(lambda: list(self._indexes[which].get(key, [])))
        return entries[0] if entries else None

    def _read(self, read: Callable[[], list]) -> list:
        for _ in range(_READ_ATTEMPTS - 1):
            try:
                return read()
            except RuntimeError:  # "changed size during iteration": the watch updated it meanwhile
                continue
        return read()
