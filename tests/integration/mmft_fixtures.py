"""Fixtures for the mmft API and operator on the local control plane; test modules import what they use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds(kubectl) -> None:
    """The mmft.io CRDs installed and Established."""
    kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=mmft")


class OperatorProcess:
    """`mmft operator` as a subprocess, as a user runs it; restartable and killable for fault tests."""

    def __init__(self, kubeconfig: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1",
               "MMFT_METRICS_PORT": str(self.metrics_port), **self.extra_env}
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mmft_operator.cli", "operator", "--all-namespaces", "--liveness="],
            env=env, stdout=log, stderr=subprocess.STDOUT,
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


@pytest.fixture
def operator(cluster, crds, tmp_path, backend):
    """A running operator for one test (no unschedulable grace, so tests need not wait minutes); on kind, the
    operator is the cluster's own Deployment and this fixture starts nothing."""
    if backend.operator_in_cluster:
        yield None
        return
    process = OperatorProcess(cluster, tmp_path / "operator.log",
                              {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0"}).start()
    yield process
    process.stop()
    if os.environ.get("MMFT_SHOW_OPERATOR_LOG"):
        print(process.log())


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
