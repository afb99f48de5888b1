"""Re-verify every resource and its children now and then: catches a deleted child, a missed event, a grace period
running out. A thread of our own instead of kopf timers, which would put a finalizer on every resource."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mmft_operator.api.common import API_VERSION
from mmft_operator.api.kinds import ALL_KINDS
from mmft_operator.kube import Kube

log = logging.getLogger(__name__)
RESYNC_SECONDS = 300.0


def resync_forever(
    kube: Kube, namespaces: list[str], submit: Callable[..., None], stop: threading.Event,
    interval_seconds: float = RESYNC_SECONDS,
) -> None:
    while not stop.wait(interval_seconds):
        for info in ALL_KINDS:
            try:
                items = kube.list_all(API_VERSION, info.kind, namespaces)
            except Exception:  # noqa: BLE001 - the next round retries; the watches keep working meanwhile
                log.exception("resync: could not list %s", info.plural)
                continue
            for item in items:
                meta = item["metadata"]
                try:
                    submit((info.kind, meta["namespace"], meta["name"]), verify_children=True)
                except Exception:  # noqa: BLE001, S110 - logged and counted by the reconcile itself
                    continue
