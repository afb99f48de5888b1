"""The one module that talks to the Kubernetes API.

Objects are plain dicts. Children are created once and patched only when their spec hash changed, so a reconcile
with nothing to do makes no mutating call. Conflicts (409) and races (404) are handled here, not in handlers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3

from mmft_operator import naming
from mmft_operator.api.common import API_VERSION
from mmft_operator.connection import Connection

log = logging.getLogger(__name__)

FIELD_MANAGER = "mmft-operator"

_PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("apps/v1", "Deployment"): "deployments",
    ("coordination.k8s.io/v1", "Lease"): "leases",
    ("batch/v1", "Job"): "jobs",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    (API_VERSION, "DatasetPrep"): "datasetpreps",
    (API_VERSION, "FineTuneJob"): "finetunejobs",
    (API_VERSION, "Evaluation"): "evaluations",
}

# The API server will not let a Job's template or a PVC's claim change; the Job's suspend is synced on its own.
_CREATE_ONLY_KINDS = {"PersistentVolumeClaim", "Job"}
# Kinds whose watch events trigger reconciles: the versions this operator wrote are remembered, so that the echo of
# its own write does not cost another reconcile.
_ECHOED_KINDS = {"Job", "ConfigMap", "DatasetPrep", "FineTuneJob", "Evaluation"}
_REMEMBERED_WRITES = 20_000


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class NamespaceTerminating(ApiError):
    """The namespace is being deleted: its objects are going away with it, nothing is left to reconcile."""


class ChildConflict(Exception):
    """A child's name is taken by an object this resource does not control."""


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str
    name: str


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [prefix]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(_PLURALS[(api_version, kind)])
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class Kube:
    """A small JSON client over urllib3 (kubeconfig or in-cluster, see `connection.py`)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        tls = {
            "cert_reqs": "CERT_NONE" if connection.insecure else "CERT_REQUIRED",
            "ca_certs": connection.ca_file,
            "cert_file": connection.cert_file,
            "key_file": connection.key_file,
            # SNI and the certificate's expected name: the kubeconfig's tls-server-name instead of the URL's host.
            "server_hostname": connection.tls_server_name,
        }
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(connection.proxy_url, num_pools=4, maxsize=32, **tls)
            if connection.proxy_url
            else urllib3.PoolManager(num_pools=4, maxsize=32, **tls)
        )
        self._own_versions: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._own_versions_lock = threading.Lock()

    # -- raw requests ------------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        resource_path: str,
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if query:
            resource_path = f"{resource_path}?{urlencode(query)}"
        token = self.connection.current_token()
        response = self._send(method, resource_path, body, content_type, token)
        if response.status == 401 and self.connection.rejected(token):  # an expired or revoked credential: renew it
            response = self._send(method, resource_path, body, content_type, self.connection.current_token())
        try:
            payload = json.loads(response.data) if response.data else {}
        except ValueError:  # a proxy or load balancer answering with HTML or plain text
            payload = {}
        if response.status >= 400:
            message = payload.get("message", response.data[:200].decode(errors="replace"))
            error_type = NamespaceTerminating if "because it is being terminated" in message else ApiError
            retry_after = response.headers.get("Retry-After", "0")
            raise error_type(
                response.status,
                payload.get("reason", ""),
                message,
                float(retry_after) if retry_after.isdigit() else 0.0,
            )
        return payload

    def _send(
        self, method: str, resource_path: str, body: Any, content_type: str, token: str | None
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self._pool.request(
            method,
            f"{self.connection.server}{resource_path}",
            body=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            timeout=urllib3.Timeout(connect=10, read=60),
            retries=False,
        )

    def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return self.request("GET", path(ref.api_version, ref.kind, ref.namespace, ref.name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, label_selector: dict[str, str]) -> list[dict]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(label_selector.items()))
        payload = self.request("GET", path(api_version, kind, namespace), query={"labelSelector": selector})
        return payload.get("items", [])

    def list_all(self, api_version: str, kind: str, namespaces: list[str]) -> list[dict]:
        """Every object of a kind in the given namespaces, or cluster-wide when none are given."""
        if not namespaces:
            return self.request("GET", path(api_version, kind, None)).get("items", [])
        return [item for ns in namespaces for item in self.request("GET", path(api_version, kind, ns)).get("items", [])]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        created = self.request(
            "POST",
            path(obj["apiVersion"], obj["kind"], meta["namespace"]),
            body=obj,
            query={"fieldManager": FIELD_MANAGER},
        )
        self._remember(obj["kind"], created)
        return created

    def merge_patch(self, ref: Ref, patch: dict[str, Any], subresource: str = "") -> dict[str, Any]:
        patched = self.request(
            "PATCH",
            path(ref.api_version, ref.kind, ref.namespace, ref.name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
            query={"fieldManager": FIELD_MANAGER},
        )
        self._remember(ref.kind, patched)
        return patched

    # -- echoes of our own writes ------------------------------------------------------------------------------
    def _remember(self, kind: str, written: dict[str, Any]) -> None:
        meta = written.get("metadata") or {}
        if kind not in _ECHOED_KINDS or not meta.get("resourceVersion"):
            return
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self._own_versions_lock:
            self._own_versions[key] = meta["resourceVersion"]
            self._own_versions.move_to_end(key)
            while len(self._own_versions) > _REMEMBERED_WRITES:  # echoes of deleted objects never arrive
                self._own_versions.popitem(last=False)

    def is_own_write(self, kind: str, namespace: str, name: str, resource_version: str) -> bool:
        """Whether a watch event shows exactly the version this operator wrote last (nobody changed it since)."""
        key = (kind, namespace, name)
        with self._own_versions_lock:
            if resource_version and self._own_versions.get(key) == resource_version:
                del self._own_versions[key]
                return True
        return False

    # -- children ----------------------------------------------------------------------------------------------
    def ensure(self, desired: dict[str, Any], owner_uid: str, expect_missing: bool = False) -> tuple[dict, bool]:
        """Create the child, or bring it to the desired spec hash. Returns (object, whether a write happened).

        `expect_missing` (a resource seen for the first time) tries the create first and reads only on a conflict,
        which halves the calls of a burst of new resources.
        """
        meta = desired["metadata"]
        ref = Ref(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        existing = None if expect_missing else self.get(ref)
        if existing is None:
            try:
                return self.create(desired), True
            except ApiError as error:
                if error.status != 409:
                    raise
                existing = self.get(ref)
                if existing is None:
                    raise
        if not _controlled_by(existing, owner_uid):
            raise ChildConflict(
                f"{desired['kind']} {meta['name']} exists and is not controlled by this resource; rename or delete it"
            )
        wanted_hash = meta.get("annotations", {}).get(naming.SPEC_HASH_ANNOTATION)
        current_hash = existing["metadata"].get("annotations", {}).get(naming.SPEC_HASH_ANNOTATION)
        if wanted_hash == current_hash or _create_only(desired):
            return existing, False
        patch = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
        patch["metadata"] = {**patch["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}
        return self.merge_patch(ref, patch), True

    def delete_owned(self, ref: Ref, owner_uid: str) -> bool:
        """Delete a child only if this resource controls it; returns whether a delete was sent.

        The delete carries the observed UID as a precondition (a same-named object created since is never hit) and
        background propagation, so a Job's pods go with it through the garbage collector and the operator needs no
        delete right on pods.
        """
        existing = self.get(ref)
        if existing is None or not _controlled_by(existing, owner_uid):
            return False
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": existing["metadata"]["uid"]},
        }
        try:
            self.request("DELETE", path(ref.api_version, ref.kind, ref.namespace, ref.name), body=body)
        except ApiError as error:
            if error.status in (404, 409):  # gone already, or replaced by a new object the precondition protects
                return False
            raise
        return True

    def set_job_suspend(self, job: dict[str, Any], suspend: bool) -> dict[str, Any]:
        meta = job["metadata"]
        ref = Ref("batch/v1", "Job", meta["namespace"], meta["name"])
        return self.merge_patch(
            ref, {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": {"suspend": suspend}}
        )

    def set_job_ttl(self, job: dict[str, Any], seconds: int) -> dict[str, Any]:
        """Set a finished Job's ttlSecondsAfterFinished (mutable; the TTL controller counts from the Job's end)."""
        meta = job["metadata"]
        ref = Ref("batch/v1", "Job", meta["namespace"], meta["name"])
        return self.merge_patch(
            ref, {"metadata": {"uid": meta["uid"]}, "spec": {"ttlSecondsAfterFinished": seconds}}
        )

    # -- status and events -------------------------------------------------------------------------------------
    def patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Optimistic: fails with 409 if the object changed since it was read, so no update is lost."""
        meta = body["metadata"]
        ref = Ref(body["apiVersion"], body["kind"], meta["namespace"], meta["name"])
        return self.merge_patch(
            ref, {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}, subresource="status"
        )

    def post_event(self, body: dict[str, Any], event_type: str, reason: str, message: str, now: dt.datetime) -> None:
        meta = body["metadata"]
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.create(event)
        except NamespaceTerminating:
            return
        except ApiError as error:  # an Event is best effort; the status already tells the story
            log.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], error)


def _controlled_by(obj: dict[str, Any], owner_uid: str) -> bool:
    return any(
        ref.get("uid") == owner_uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences", [])
    )


def _create_only(obj: dict[str, Any]) -> bool:
    annotations = obj["metadata"].get("annotations", {})
    return obj["kind"] in _CREATE_ONLY_KINDS or annotations.get(naming.CREATE_ONLY_ANNOTATION) == "true"
