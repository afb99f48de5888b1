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
        "spec": _pick(body.get("spec", {}), "suspend"),
        "status": dict(body.get("status") or {}),
    }


def pod_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        # ownerReferences: the pods of a deleted Job of the same name, still terminating, are told apart by it.
        "metadata": _pick(body.get("metadata", {}), "name", "creationTimestamp", "deletionTimestamp",
                          "ownerReferences"),
        "status": dict(body.get("status") or {}),
    }


def report_entry(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "metadata": _pick(body.get("metadata", {}), "name", "ownerReferences"),
        "data": dict(body.get("data") or {}),
    }


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
        body["spec"] = _pick(body.get("spec") or {}, "suspend")
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
        # The operator's own last status write per owner, until the watch shows it: a reconcile triggered by a
        # child right after a write would otherwise start from the status before it, and its patch would conflict.
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._written_lock = threading.Lock()

    def attach(self, jobs: Mapping, pods: Mapping, reports: Mapping, owners: dict[str, Mapping] | None = None) -> None:
        self._owners = owners or {}
        self._indexes = (jobs, pods, reports)

    @property
    def ready(self) -> bool:
        return self._indexes is not None

    def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(0, (namespace, name))

    def pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        return self._read(lambda: list(self._indexes[1].get((namespace, job_name), [])))

    def report(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._one(2, (namespace, name))

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
        watched = entries[0]
        with self._written_lock:
            written = self._written.get(key)
            if written is not None and not _newer(written, watched):
                del self._written[key]  # the watch caught up
                written = None
        return copy.deepcopy(written or watched)

    def wrote(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata", {})
        if body.get("kind") in self._owners:
            with self._written_lock:
                self._written[(body["kind"], meta.get("namespace", ""), meta.get("name", ""))] = owner_entry(body)

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
