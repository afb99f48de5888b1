"""Helpers for tests against a cluster: the operator as a subprocess, tokens, waiting."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def token_kubeconfig(
    kubectl, admin_kubeconfig: Path, path: Path, namespace: str = "mmft-system", account: str = "mmft-operator"
) -> Path:
    """A kubeconfig that authenticates with a real token of a ServiceAccount (the operator's by default)."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    token = kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    cluster = admin["clusters"][0]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "mmft-operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "mmft-operator"}}],
                "current-context": "operator",
            }
        )
    )
    return path


class OperatorProcess:
    """`mmft operator` as a subprocess, as a user runs it; restartable and killable for fault tests."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "MMFT_METRICS_PORT": str(self.metrics_port),
            **self.extra_env,
        }
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mmft_operator.cli", "operator", "--all-namespaces", "--liveness="],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


WORKLOAD_SERVICE_ACCOUNT = "mmft-workload"
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"


def workload_service_account(namespace: str, name: str = WORKLOAD_SERVICE_ACCOUNT) -> dict:
    """The workloads' ServiceAccount as the samples expect it on GKE: bound to a Google service account by Workload
    Identity. Without the annotation their Cloud Storage FUSE mounts fail, on GKE as in the local cluster's
    simulation (docs/localcluster.md, "Volumes")."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {WORKLOAD_IDENTITY: f"{name}@mmft-local.iam.gserviceaccount.com"},
        },
    }


def create_workload_service_account(kubectl, namespace: str, name: str = WORKLOAD_SERVICE_ACCOUNT) -> None:
    kubectl("create", "-f", "-", input=json.dumps(workload_service_account(namespace, name)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def get_json(cluster, *args: str) -> dict:
    """`kubectl get ARGS -o json` through a LocalCluster (its own kubeconfig), parsed."""
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


MUTATING_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def audit_mutations(audit: Path, since: dt.datetime, user: str, namespace: str | None = None) -> list[str]:
    """Create/update/patch/delete calls `user` made since `since`, read from the API server's audit log."""
    calls = []
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != user:
            continue
        received = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        in_scope = namespace is None or f"/namespaces/{namespace}/" in event["requestURI"]
        if (
            received >= since
            and in_scope
            and event["verb"] in ("create", "update", "patch", "delete", "deletecollection")
        ):
            calls.append(f"{event['verb']} {event['requestURI']}")
    return calls


def reconciles_done(metrics_port: int, kind: str = "FineTuneJob") -> float:
    """The operator's own count of successful reconciles of `kind` (0 while its endpoint is not up)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    pattern = rf'^mmft_reconciles_total\{{kind="{kind}",result="ok"\}} ([0-9.e+]+)$'
    match = re.search(pattern, body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
