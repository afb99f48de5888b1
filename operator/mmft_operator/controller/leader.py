"""One writer at a time: a coordination.k8s.io Lease held by the active operator replica.

A standby replica blocks in start-up until the lease is free or expired; the leader renews it and exits the process
if it cannot renew in time, so two replicas never reconcile at once (the Deployment restarts the one that exits).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from mmft_operator.kube import ApiError, Kube, Ref

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAME = "mmft-operator"


def _micro_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaderLease:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: int = 15,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.kube = kube
        self.ref = Ref(LEASE_API, "Lease", namespace, name)
        self.identity = identity
        self.duration_seconds = duration_seconds
        self.clock = clock

    def try_acquire_or_renew(self) -> bool:
        """True when this replica holds the lease afterwards."""
        now = self.clock()
        lease = self.kube.get(self.ref)
        if lease is None:
            return self._write(None, {"acquireTime": _micro_time(now), "leaseTransitions": 0}, now)
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds", self.duration_seconds)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder == self.identity:
            return self._write(lease, {}, now)
        if holder and not expired:
            return False
        takeover = {"acquireTime": _micro_time(now), "leaseTransitions": spec.get("leaseTransitions", 0) + 1}
        return self._write(lease, takeover, now)

    def release(self) -> None:
        lease = self.kube.get(self.ref)
        if lease is None or lease.get("spec", {}).get("holderIdentity") != self.identity:
            return
        try:
            self.kube.merge_patch(
                self.ref,
                {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": None, "renewTime": None},
                },
            )
        except ApiError as error:  # the lease then simply expires
            log.warning("could not release the leader lease: %s", error)

    def _write(self, lease: dict[str, Any] | None, extra: dict[str, Any], now: dt.datetime) -> bool:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_seconds,
            "renewTime": _micro_time(now),
            **extra,
        }
        try:
            if lease is None:
                self.kube.create(
                    {
                        "apiVersion": LEASE_API,
                        "kind": "Lease",
                        "metadata": {"name": self.ref.name, "namespace": self.ref.namespace},
                        "spec": spec,
                    }
                )
            else:
                self.kube.merge_patch(
                    self.ref, {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": spec}
                )
        except ApiError as error:
            if error.status == 409:
                return False  # another replica wrote first
            raise
        return True


def become_leader(kube: Kube, namespace: str, duration_seconds: int, stop: threading.Event) -> LeaderLease:
    """Block until this replica holds the Lease (kopf starts watching only after start-up handlers return), then
    renew it on a thread of its own until `stop`."""
    identity = f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaderLease(kube, namespace, LEASE_NAME, identity, duration_seconds)
    while not lease.try_acquire_or_renew():
        log.info("standby: another replica holds the leader lease; retrying")
        time.sleep(duration_seconds / 5)
    log.info("leader: %s holds lease %s/%s", identity, namespace, LEASE_NAME)
    threading.Thread(target=_renew_forever, args=(lease, stop), name="mmft-lease", daemon=True).start()
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
