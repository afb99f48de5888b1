"""Fixtures for tests against the local control plane (docs/localcluster.md).

`cluster` starts one cluster per test session and stops it at the end; with MMFT_KUBECONFIG set, the tests use that
cluster instead and leave it running. Every test under tests/integration is marked `integration`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cluster_helpers import ROOT, OperatorProcess

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_configure(config):
    from backends import BackendError, select_backend

    try:
        config.mmft_backend = select_backend()
    except BackendError as error:
        raise pytest.UsageError(str(error)) from error


def pytest_collection_modifyitems(config, items):
    backend = config.mmft_backend
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("simulated_pods") and not backend.simulated_pods:
            item.add_marker(pytest.mark.skip(reason=f"needs kwok's simulated pods; backend {backend.name} runs them"))
        if backend.kubernetes_version and not item.get_closest_marker("both_minors"):
            item.add_marker(pytest.mark.skip(reason=f"runs against the newest Kubernetes only, not "
                                                    f"{backend.kubernetes_version} (mark it both_minors)"))
        if item.get_closest_marker("kind_only") and backend.name != "kind":
            item.add_marker(pytest.mark.skip(reason="runs real containers: MMFT_TEST_BACKEND=kind (docs/kind.md)"))


@pytest.fixture(scope="session")
def backend(pytestconfig):
    """Which cluster the tests run on (tests/integration/backends.py): the local control plane or kind."""
    return pytestconfig.mmft_backend


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"kubectl {' '.join(self.cmd[2:])} exited {self.returncode}: {self.stderr.strip()}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, backend) -> Path:
    """The admin kubeconfig of a running cluster: the backend's, or a local one started for this session."""
    if backend.kubeconfig is not None:
        yield backend.kubeconfig
        return
    from mmft_localcluster import LocalCluster

    local = LocalCluster(tmp_path_factory.mktemp("localcluster"), kubernetes_version=backend.kubernetes_version)
    try:
        yield local.up()
    finally:
        local.down()


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory, backend):
    """A local cluster with the real node (docs/localcluster.md, "The real node"): a LocalCluster object, up.

    One real node runs per machine, so each module that needs it starts its own and stops it at the module's end.
    Without the machine's prerequisites the fixture fails with the message naming them (CI installs them);
    MMFT_REAL_NODE=0 skips these tests instead, e.g. on a machine where they cannot run as root.
    """
    if backend.name != "local" or backend.kubeconfig is not None:
        pytest.skip("the real node is part of the local control plane the tests start themselves")
    if os.environ.get("MMFT_REAL_NODE") == "0":
        pytest.skip("MMFT_REAL_NODE=0")
    from mmft_localcluster import LocalCluster

    local = LocalCluster(tmp_path_factory.mktemp("realnode"), real_node=True)
    try:
        local.up(timeout=300)
        yield local
    finally:
        local.down()
        # The imported images (gigabytes) would outlive the session in pytest's kept temporary directories.
        shutil.rmtree(local.node.files.containerd_root, ignore_errors=True)


@pytest.fixture(scope="session")
def kubectl(cluster):
    """kubectl(*args, input=None, check=True) -> CompletedProcess, with the wheel's kubectl and the cluster's config."""
    from mmft_localcluster import kubectl_path

    executable = str(kubectl_path())

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        command = [executable, f"--kubeconfig={cluster}", *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=180)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    return run


@pytest.fixture
def namespace(kubectl) -> str:
    """A fresh namespace whose default ServiceAccount exists (pods are refused before it does); deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"namespace {name}: default ServiceAccount never appeared"
        time.sleep(0.2)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


# -- mmft: the API installed, the operator running ------------------------------------------------------------


@pytest.fixture(scope="session")
def crds(kubectl, cluster) -> None:
    """The mmft.io CRDs installed and Established."""
    from mmft_localcluster.crds import wait_established

    kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    wait_established(cluster, "crd", "-l", "app.kubernetes.io/part-of=mmft")


@pytest.fixture(scope="session")
def installed(kubectl, crds) -> None:
    """deploy/overlays/local applied: the mmft-system namespace, the operator's ServiceAccount and its RBAC."""
    kubectl("apply", "--server-side", "-k", str(ROOT / "deploy/overlays/local"))


@pytest.fixture
def operator(cluster, crds, tmp_path, backend):
    """A running operator for one test (no unschedulable grace, so tests need not wait minutes); on kind, the
    operator is the cluster's own Deployment and this fixture starts nothing."""
    if backend.operator_in_cluster:
        yield None
        return
    process = OperatorProcess(cluster, tmp_path / "operator.log", {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0"}).start()
    yield process
    process.stop()
    if os.environ.get("MMFT_SHOW_OPERATOR_LOG"):
        print(process.log())


# -- Kueue (docs/kueue.md): its controller manager beside a cluster started by mmft_localcluster ----------------


@pytest.fixture(scope="module")
def kueue(cluster):
    from mmft_localcluster.kueue import KueueBuild, KueueManager

    build = KueueBuild.from_cache()
    if not build.is_built():
        pytest.skip(f"Kueue is not built in {build.directory}: run localcluster/build-kueue.sh (build.sh runs it)")
    audit = cluster.parent / "audit.log"
    if not audit.exists():
        pytest.skip(f"no audit log next to {cluster}: Kueue runs only beside a cluster started by mmft_localcluster")
    manager = KueueManager(cluster.parent, build).start()
    yield manager
    manager.stop()
