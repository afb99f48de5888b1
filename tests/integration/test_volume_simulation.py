"""Volume semantics on the kwok nodes (docs/localcluster.md, "Volumes"): the real attach/detach controller with the
simulated PD attacher and kubelet volume manager (mmft_localcluster/volume_simulator.py), and Cloud Storage FUSE
mounts checked against a GCS emulator (fake-gcs-server) and the pod ServiceAccount's Workload Identity annotation.

The module starts its own cluster (`mmft cluster up --gcs-emulator URL`) and emulator, and stops both however it ends.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.simulated_pods]

WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
ZONE = "topology.kubernetes.io/zone"
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def gcs_emulator(tmp_path_factory, backend):
    """fake-gcs-server (built by localcluster/build.sh) in memory on a free port; its URL."""
    if backend.name != "local" or backend.kubeconfig is not None:
        pytest.skip("needs a local control plane started with --gcs-emulator")
    from mmft_localcluster.node import NodeBinaries

    binary = NodeBinaries.from_cache().gcs_emulator
    assert binary.exists(), f"{binary} is missing: run localcluster/build.sh"
    port = _free_port()
    log = tmp_path_factory.mktemp("gcs") / "fake-gcs-server.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/storage/v1/b"):
            assert process.poll() is None, f"fake-gcs-server exited: {log.read_text()}"
            assert time.monotonic() < deadline, "fake-gcs-server did not answer within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def local(tmp_path_factory, gcs_emulator):
    """A cluster of its own whose volume simulator asks `gcs_emulator` which buckets exist, plus a second CPU node in
    the first one's zone (a zonal disk can only move between nodes of one zone)."""
    from mmft_localcluster import LocalCluster
    from mmft_localcluster.gke_nodes import CPU_SHAPE, node_manifest

    cluster = LocalCluster(tmp_path_factory.mktemp("volumes"), gcs_emulator=gcs_emulator)
    try:
        cluster.up()
        first = json.loads(cluster.kubectl("get", "node", "gke-sim-cpu-0", "-o", "json").stdout)
        cluster.create([node_manifest("gke-sim-cpu-9", CPU_SHAPE, first["metadata"]["labels"][ZONE])])
        cluster.kubectl("wait", "--for=condition=Ready", "--timeout=60s", "node/gke-sim-cpu-9")
        yield cluster
    finally:
        stopped = cluster.down()
    assert "volume-simulator" in stopped  # `down` stops it with the rest


@pytest.fixture
def namespace(local):
    name = f"vol-{uuid.uuid4().hex[:8]}"
    local.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while local.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the default ServiceAccount never appeared"
        time.sleep(0.2)
    yield name
    local.kubectl("delete", "namespace", name, "--wait=false")


def _apply(local, namespace: str, *manifests: dict) -> None:
    local.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)}),
    )


def _pod(name: str, volume: dict, node: str | None = None, annotations: dict | None = None, account: str = "default"):
    spec = {
        "serviceAccountName": account,
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "resources": RESOURCES,
                "volumeMounts": [{"name": volume["name"], "mountPath": "/data"}],
            }
        ],
        "volumes": [volume],
    }
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": spec,
    }


def _gcsfuse_pod(name: str, bucket: str, account: str) -> dict:
    volume = {
        "name": "gcs",
        "csi": {"driver": "gcsfuse.csi.storage.gke.io", "volumeAttributes": {"bucketName": bucket}},
    }
    return _pod(name, volume, annotations={"gke-gcsfuse/volumes": "true"}, account=account)


def _service_account(name: str, workload_identity: bool) -> dict:
    annotations = {WORKLOAD_IDENTITY: f"{name}@mmft-local.iam.gserviceaccount.com"} if workload_identity else {}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "annotations": annotations}}


def _create_bucket(emulator: str, name: str) -> None:
    request = urllib.request.Request(
        f"{emulator}/storage/v1/b",
        data=json.dumps({"name": name}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _pod_status(local, namespace: str, name: str) -> dict:
    return json.loads(local.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)["status"]


def _waiting_reasons(status: dict) -> list[str]:
    return [c["state"].get("waiting", {}).get("reason") for c in status.get("containerStatuses", [])]


def _warnings(local, namespace: str, pod: str, reason: str) -> list[dict]:
    events = json.loads(local.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in events if e["involvedObject"]["name"] == pod and e["reason"] == reason]


def _wait_for(what: str, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.5)


def _wait_running(local, namespace: str, pod: str, timeout: float = 60) -> None:
    _wait_for(f"{pod} Running", lambda: _pod_status(local, namespace, pod).get("phase") == "Running", timeout)


def _assert_container_creating(local, namespace: str, pod: str) -> None:
    status = _pod_status(local, namespace, pod)
    assert status["phase"] == "Pending", status
    assert _waiting_reasons(status) == ["ContainerCreating"], status


def test_rwo_claim_on_a_second_node_waits_for_detach_then_attaches(local, namespace):
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    _apply(local, namespace, claim, _pod("first", volume, node="gke-sim-cpu-0"))
    _wait_running(local, namespace, "first")
    pv = json.loads(local.kubectl("get", "pvc", "data", "-n", namespace, "-o", "json").stdout)["spec"]["volumeName"]

    _apply(local, namespace, _pod("second", volume, node="gke-sim-cpu-9"))
    events = _wait_for("FailedAttachVolume", lambda: _warnings(local, namespace, "second", "FailedAttachVolume"))
    # The words of kube-controller-manager v1.37's attach/detach controller (reconciler.go, reportMultiAttachError).
    assert events[0]["message"] == f'Waiting for detach for volume "{pv}" Volume is already used by pod(s) first'
    assert events[0]["source"]["component"] == "attachdetach-controller"
    assert events[0]["type"] == "Warning"
    _wait_for("ContainerCreating", lambda: _waiting_reasons(_pod_status(local, namespace, "second")))
    time.sleep(3)  # and it stays so while the first pod holds the disk
    _assert_container_creating(local, namespace, "second")
    assert _pod_status(local, namespace, "first")["phase"] == "Running"

    local.kubectl("delete", "pod", "first", "-n", namespace, "--wait=true", "--timeout=60s")
    _wait_running(local, namespace, "second")
    assert _warnings(local, namespace, "second", "SuccessfulAttachVolume")
    attachments = json.loads(local.kubectl("get", "volumeattachments", "-o", "json").stdout)["items"]
    assert [a["spec"]["nodeName"] for a in attachments if a["spec"]["source"]["persistentVolumeName"] == pv] == [
        "gke-sim-cpu-9"
    ]


def test_missing_bucket_fails_the_mount_until_it_is_created(local, gcs_emulator, namespace):
    bucket = f"mmft-missing-{uuid.uuid4().hex[:8]}"
    _apply(
        local, namespace, _service_account("trainer", workload_identity=True), _gcsfuse_pod("reader", bucket, "trainer")
    )
    events = _wait_for("FailedMount", lambda: _warnings(local, namespace, "reader", "FailedMount"))
    assert events[0]["message"] == (
        f'MountVolume.SetUp failed for volume "gcs" : rpc error: code = NotFound desc = failed to get GCS bucket '
        f'"{bucket}": googleapi: Error 404: The specified bucket does not exist., notFound'
    )
    assert events[0]["source"]["component"] == "kubelet"
    assert events[0]["type"] == "Warning"
    _assert_container_creating(local, namespace, "reader")
    # The kubelet retries; the event counts the failures instead of piling up new ones.
    _wait_for("a repeated FailedMount", lambda: _warnings(local, namespace, "reader", "FailedMount")[0]["count"] >= 2)
    _assert_container_creating(local, namespace, "reader")

    _create_bucket(gcs_emulator, bucket)
    _wait_running(local, namespace, "reader", timeout=30)


def test_service_account_without_workload_identity_fails_the_mount(local, gcs_emulator, namespace):
    bucket = f"mmft-present-{uuid.uuid4().hex[:8]}"
    _create_bucket(gcs_emulator, bucket)
    _apply(
        local,
        namespace,
        _service_account("anonymous", workload_identity=False),
        _gcsfuse_pod("reader", bucket, "anonymous"),
    )
    events = _wait_for("FailedMount", lambda: _warnings(local, namespace, "reader", "FailedMount"))
    message = events[0]["message"]
    assert message.startswith(
        f'MountVolume.SetUp failed for volume "gcs" : rpc error: code = PermissionDenied desc = failed to get GCS '
        f'bucket "{bucket}": googleapi: Error 403: Caller does not have storage.objects.list access'
    ), message
    assert events[0]["source"]["component"] == "kubelet"
    _assert_container_creating(local, namespace, "reader")

    local.kubectl(
        "annotate",
        "serviceaccount",
        "anonymous",
        "-n",
        namespace,
        f"{WORKLOAD_IDENTITY}=anonymous@mmft-local.iam.gserviceaccount.com",
    )
    _wait_running(local, namespace, "reader", timeout=30)


def test_pod_without_the_gcsfuse_annotation_has_no_sidecar(local, gcs_emulator, namespace):
    bucket = f"mmft-present-{uuid.uuid4().hex[:8]}"
    _create_bucket(gcs_emulator, bucket)
    pod = _gcsfuse_pod("reader", bucket, "trainer")
    pod["metadata"]["annotations"] = {}
    _apply(local, namespace, _service_account("trainer", workload_identity=True), pod)
    events = _wait_for("FailedMount", lambda: _warnings(local, namespace, "reader", "FailedMount"))
    assert events[0]["message"] == (
        'MountVolume.SetUp failed for volume "gcs" : rpc error: code = FailedPrecondition desc = failed to find the '
        "sidecar container in Pod spec"
    )
    _assert_container_creating(local, namespace, "reader")
