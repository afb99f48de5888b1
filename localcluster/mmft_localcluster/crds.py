"""Waiting for CustomResourceDefinitions to be served.

`kubectl wait --for=condition=Established` is not usable right after an apply: a CRD the API server has only just
created reads back with `status.conditions: null`, and kubectl then fails at once ("accessor error: <nil> is of the
type <nil>") instead of waiting. CI hit that race once in ~1200 runs of the fixture, so every caller polls here.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from mmft_localcluster.paths import kubectl_path


class CrdsNotEstablished(RuntimeError):
    pass


def crds_of(listing: dict) -> list[dict]:
    """The CRDs of a `kubectl get -o json` answer: one object, or a List of them."""
    return (listing.get("items") or []) if listing.get("kind") == "List" else [listing]


def not_established(listing: dict) -> list[str]:
    """Names of the CRDs in a `kubectl get -o json` answer not yet Established."""
    pending = []
    for crd in crds_of(listing):
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            pending.append(crd.get("metadata", {}).get("name", "?"))
    return pending


def wait_established(kubeconfig: Path | str, *selection: str, timeout: float = 60.0) -> None:
    """Poll `kubectl get <selection>` until it names at least one CRD and all of them are Established.

    `selection` is what follows `kubectl get`: `"crd", "-l", "app=x"`, `"crd", name, ...` or `"-f", directory`.
    """
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([str(kubectl_path()), f"--kubeconfig={kubeconfig}", "get", *selection, "-o", "json"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            listing = json.loads(done.stdout)
            pending = not_established(listing)
            if not pending and crds_of(listing):
                return
            why = f"not Established: {', '.join(pending) or 'no CRD matched'}"
        else:
            why = done.stderr.strip()
        if time.monotonic() > deadline:
            raise CrdsNotEstablished(f"kubectl get {' '.join(selection)} after {timeout:.0f} s: {why}")
        time.sleep(0.2)
