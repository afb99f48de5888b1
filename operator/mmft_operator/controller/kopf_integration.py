"""What the operator asks of kopf: its settings, its login, and what the watch cache's indexes keep of each event.

`handlers.py` registers the handlers; this module holds what they hand to kopf, so the wiring stays declarations.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from mmft_operator import naming
from mmft_operator.api.kinds import ALL_KINDS, BY_KIND
from mmft_operator.connection import Connection

LISTING_PAGE = 200
MANAGED = {"app.kubernetes.io/managed-by": naming.MANAGED_BY}
MANAGED_SELECTOR = ",".join(f"{key}={value}" for key, value in MANAGED.items())
# The children the operator watches (group, version, plural): the watch cache and the triggers of their owners.
CHILD_RESOURCES = [("batch", "v1", "jobs"), ("", "v1", "pods"), ("", "v1", "configmaps"), ("apps", "v1", "deployments")]
# Events carry no labels: the watch takes the cluster's Warning events only (the API server filters), and the watch
# cache's index keeps only the reasons that say a workload pod cannot start (watch_cache.event_entry).
EVENTS = ("", "v1", "events")
WARNING_EVENTS_SELECTOR = "type=Warning"
_KIND_BY_LABEL = {info.kind.lower(): info.kind for info in ALL_KINDS}


def connection_info(connection: Connection) -> kopf.ConnectionInfo:
    """kopf's watches use the same credentials and proxy as the operator's own calls (kopf asks again after a 401).

    kopf has no setting for the kubeconfig's tls-server-name: with one, kopf verifies the server's name as given."""
    return kopf.ConnectionInfo(
        server=connection.server,
        ca_path=connection.ca_file,
        insecure=connection.insecure,
        certificate_path=connection.cert_file,
        private_key_path=connection.key_file,
        token=connection.bearer_token(),
        proxy_url=connection.proxy_url,
    )


def configure(settings: kopf.OperatorSettings) -> None:
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
    settings.watching.field_selectors[EVENTS] = WARNING_EVENTS_SELECTOR
    # The initial listing in pages: a page's bodies lose their managedFields (kopf_patches) before the next is read,
    # instead of all 2,000 pods of a listing being parsed at once, managedFields and all.
    settings.watching.chunk_size = LISTING_PAGE


def owner_of_child(labels: dict[str, str]) -> tuple[str, str] | None:
    """The mmft resource (kind, name) a child's labels name, or None."""
    kind = _KIND_BY_LABEL.get(labels.get(naming.OWNER_KIND_LABEL, ""))
    name = labels.get(naming.OWNER_NAME_LABEL)
    return (kind, name) if kind in BY_KIND and name else None


def finetunejob_dependencies(namespace: str, name: str, spec: Any) -> dict | None:
    ref = (spec.get("dataset") or {}).get("datasetPrepRef")
    return {(namespace, ref["name"]): name} if ref else None


def evaluation_dependencies(namespace: str, name: str, spec: Any) -> dict | None:
    keys = {}
    ref = (spec.get("dataset") or {}).get("datasetPrepRef")
    if ref:
        keys[("DatasetPrep", namespace, ref["name"])] = name
    for model in spec.get("models") or []:
        job_ref = model.get("fineTuneJobRef")
        if job_ref:
            keys[("FineTuneJob", namespace, job_ref["name"])] = name
    return keys or None
