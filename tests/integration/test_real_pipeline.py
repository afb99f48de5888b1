"""mmft for real on the local cluster's real node (docs/localcluster.md): the operator as a pod from its image under
its own ServiceAccount, the toy pipeline in containers (dataprep -> Axolotl on CPU -> export to the GCS emulator ->
evaluation), a training pod evicted mid-run resuming from its checkpoint, and failing containers named in status.

Needs the images of localcluster/build-images.sh (the fixture runs it; cached by content, seconds when nothing
changed) and Docker. MMFT_IMAGE_TAG picks another tag than `dev`, as for build-images.sh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
import uuid

import pytest
from cluster_helpers import ROOT, get_json, wait_for
from mmft_localcluster import kubectl_path, node

# The first test also pays for the module's set-up: loading the workload image (~4.6 GB) into containerd takes
# minutes on 2 cores, and CPU training and evaluation take minutes more.
pytestmark = pytest.mark.timeout(2700)

TAG = os.environ.get("MMFT_IMAGE_TAG", "dev")
IMAGES = {target: f"mmft-{target}:{TAG}" for target in ("operator", "workload", "tensorboard")}
SAMPLES = ROOT / "deploy/localcluster/samples/tiny-pipeline"
BUCKET = "mmft-local"
OPERATOR_ACCOUNT = "system:serviceaccount:mmft-system:mmft-operator"
EMULATOR = "http://10.96.0.40:4443"


def install_mmft(cluster, tag: str = TAG) -> None:
    """What hack/demo.sh does: images built and loaded, inputs in the bucket folder, then `mmft cluster install-mmft`
    (deploy/localcluster applied, the Helm chart installed)."""
    built = subprocess.run(
        ["bash", str(ROOT / "localcluster/build-images.sh"), "operator", "workload", "tensorboard"],
        env={**os.environ, "MMFT_IMAGE_TAG": tag},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, f"build-images.sh failed:\n{built.stderr[-3000:]}"
    for image in IMAGES.values():
        cluster.load_image(image)
    bucket = node.bucket_dir(BUCKET)
    subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--user=1000:1000", "--entrypoint=python",
         "-v", f"{ROOT}:/src:ro", "-v", f"{bucket}:/bucket", IMAGES["workload"],
         "/src/hack/write_demo_inputs.py", "/bucket"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    cluster.install_mmft(tag)


@pytest.fixture(scope="module")
def mmft(real_cluster):
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: the images are built with it (bash localcluster/build-images.sh)")
    install_mmft(real_cluster)
    return real_cluster


@pytest.fixture
def pipeline_namespace(mmft):
    name = f"pipeline-{uuid.uuid4().hex[:8]}"
    mmft.create_real_node_namespace(name)
    yield name
    mmft.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _condition(resource: dict, kind: str) -> dict:
    return next((c for c in resource.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def _audit_users(cluster, verb: str, resource: str) -> set[str]:
    users = set()
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event.get("verb") == verb and event.get("objectRef", {}).get("resource") == resource:
            users.add(event["user"]["username"])
    return users


def test_the_operator_runs_as_a_pod_with_its_own_service_account_and_rbac(mmft):
    # Installed by `helm install` of deploy/helm/mmft: the release's Deployment, its pod in a real container.
    deployment = get_json(mmft, "deployment", "mmft-operator", "-n", "mmft-system")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "mmft"
    pods = get_json(mmft, "pods", "-n", "mmft-system", "-l", "app.kubernetes.io/component=operator")["items"]
    assert len(pods) == 1
    assert pod_ready(pods[0]), pods[0]["status"]
    pod = pods[0]
    assert pod["spec"]["nodeName"] == node.REAL_NODE_NAME
    assert pod["spec"]["serviceAccountName"] == "mmft-operator"
    assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    # Its calls reach the API server with its ServiceAccount token (in-cluster credentials), and RBAC holds it to
    # the chart's ClusterRole (deploy/base/clusterrole.yaml's copy): it may create Jobs, not read Secrets or delete
    # Nodes.
    wait_for(lambda: OPERATOR_ACCOUNT in _audit_users(mmft, "watch", "finetunejobs"), 60, interval=1,
             what="the operator's watch")
    can = lambda verb, resource: mmft.kubectl(  # noqa: E731
        "auth", "can-i", verb, resource, "--all-namespaces", f"--as={OPERATOR_ACCOUNT}", check=False
    ).stdout.strip()
    assert can("create", "jobs.batch") == "yes"
    assert can("list", "secrets") == "no"
    assert can("delete", "nodes") == "no"


def test_the_pipeline_runs_in_real_containers_with_real_values_in_every_column(mmft, pipeline_namespace):
    namespace = pipeline_namespace
    mmft.kubectl("apply", "-n", namespace, "-k", str(SAMPLES))
    for resource in ("datasetprep/tiny-isic", "finetunejob/tiny-gemma3", "evaluation/tiny-gemma3"):
        mmft.kubectl("wait", "-n", namespace, resource, "--for=condition=Succeeded", "--timeout=900s", timeout=960)

    prep = get_json(mmft, "datasetprep", "tiny-isic", "-n", namespace)["status"]
    assert prep["results"]["images"] > 0 and prep["results"]["positives"] > 0
    job = get_json(mmft, "finetunejob", "tiny-gemma3", "-n", namespace)["status"]
    assert job["progress"]["summary"].startswith("4/4") and job["progress"]["loss"] > 0
    evaluation = get_json(mmft, "evaluation", "tiny-gemma3", "-n", namespace)["status"]
    assert evaluation["bestModel"] in ("base", "tuned") and 0 <= evaluation["bestBalancedAccuracy"] <= 1
    table = mmft.kubectl("get", "mmft", "-n", namespace).stdout  # what a user looks at: no column left empty
    assert "<none>" not in table, table

    pods = get_json(mmft, "pods", "-n", namespace)["items"]
    assert {pod["metadata"]["labels"]["app.kubernetes.io/component"] for pod in pods} >= {
        "dataprep", "trainer", "evaluator", "tensorboard",
    }  # fmt: skip
    for pod in pods:
        assert pod["spec"]["nodeName"] == node.REAL_NODE_NAME
        assert pod["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    # The trainer reported through its report ConfigMap with its own pod's token, not the operator's.
    reporters = {
        json.loads(line)["user"]["username"]
        for line in mmft.audit_log.read_text().splitlines()
        if '"configmaps"' in line and "tiny-gemma3-finetunejob-report" in line and '"patch"' in line
    }
    assert reporters == {f"system:serviceaccount:{namespace}:default"}
    # The adapter went to the GCS emulator through the JSON API.
    prefix = f"mmft/{namespace}/tiny-gemma3/model/adapter/"
    listing = json.load(urllib.request.urlopen(f"{EMULATOR}/storage/v1/b/{BUCKET}/o?prefix={prefix}", timeout=10))
    assert any(item["name"].endswith("adapter_config.json") for item in listing.get("items", []))
    # TensorBoard answers through kubectl port-forward (the API server to the kubelet to the pod).
    tensorboard = ("-n", namespace, "rollout", "status", "deployment/tiny-gemma3-tensorboard")
    mmft.kubectl(*tensorboard, "--timeout=180s", timeout=240)
    assert _port_forward_status(mmft, namespace, "svc/tiny-gemma3-tensorboard") == 200


def test_an_evicted_training_pod_checkpoints_and_the_next_pod_resumes_from_that_step(
    mmft, pipeline_namespace, tmp_path
):
    namespace = pipeline_namespace
    mmft.kubectl("apply", "-n", namespace, "-k", str(SAMPLES))
    succeeded = ("--for=condition=Succeeded", "--timeout=900s")
    mmft.kubectl("wait", "-n", namespace, "datasetprep/tiny-isic", *succeeded, timeout=960)
    # Long enough (steps take ~0.15 s here) that the eviction lands mid-run, not during the export; no periodic
    # checkpoint before it, so the one the next pod resumes from is the one written on SIGTERM.
    longer = {"spec": {"training": {"maxSteps": 400, "saveSteps": 400}, "tensorboard": {"enabled": False}}}
    mmft.kubectl("delete", "-n", namespace, "evaluation/tiny-gemma3", "finetunejob/tiny-gemma3", "--wait=true")
    sample = _sample("finetunejob.yaml")
    sample["spec"]["training"].update(longer["spec"]["training"])
    sample["spec"]["tensorboard"] = longer["spec"]["tensorboard"]
    mmft.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(sample))

    def step():
        progress = get_json(mmft, "finetunejob", "tiny-gemma3", "-n", namespace).get("status", {}).get("progress") or {}
        return progress.get("step", 0) >= 3 and progress["step"]

    wait_for(step, 600, interval=1, what="training step 3")
    first = _trainer_pods(mmft, namespace)[0]["metadata"]["name"]
    # An evicted pod is deleted once it has stopped: follow its log until then.
    log_file = tmp_path / "evicted.log"
    with open(log_file, "w") as sink:
        follow = subprocess.Popen(
            [str(kubectl_path()), f"--kubeconfig={mmft.kubeconfig}", "logs", "-f", "-n", namespace, first],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": first, "namespace": namespace}}
        mmft.kubectl("create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{first}/eviction", "-f", "-",
                     input=json.dumps(eviction))  # fmt: skip
        follow.wait(timeout=180)
    finally:
        follow.kill()
        follow.wait()
    first_log = log_file.read_text()
    saved = [int(step) for step in re.findall(r"checkpoint saved at \S*checkpoint-(\d+)", first_log)]
    assert saved, f"no checkpoint saved on SIGTERM:\n{first_log[-3000:]}"

    mmft.kubectl("wait", "-n", namespace, "finetunejob/tiny-gemma3", *succeeded, timeout=960)
    second = next(p for p in _trainer_pods(mmft, namespace) if p["metadata"]["name"] != first)
    second_log = mmft.kubectl("logs", "-n", namespace, second["metadata"]["name"]).stdout
    assert re.search(rf"resuming from \S*checkpoint-{saved[-1]}\b", second_log), second_log[-3000:]
    status = get_json(mmft, "finetunejob", "tiny-gemma3", "-n", namespace)["status"]
    # The eviction is a disruption (DisruptionTarget), not a failure: nothing counted against backoffLimit.
    assert status.get("failures", 0) == 0 and status["progress"]["summary"].startswith("400/400"), status


def test_failing_containers_show_the_kubelets_reason_in_the_resources_status(mmft, pipeline_namespace):
    namespace = pipeline_namespace
    prep = _sample("datasetprep.yaml")
    missing_image = json.loads(json.dumps(prep))
    missing_image["metadata"]["name"] = "image-never-built"
    missing_image["spec"]["image"] = "mmft.local/never-built:0.0.1"
    no_input = json.loads(json.dumps(prep))
    no_input["metadata"]["name"] = "labels-missing"
    no_input["spec"]["source"]["labelsCsv"] = "/mnt/gcs/inputs/nowhere/labels.csv"
    no_input["spec"]["backoffLimit"] = 0
    for resource in (missing_image, no_input):
        mmft.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(resource))

    def reason_of(name: str, wanted: str):
        status = get_json(mmft, "datasetprep", name, "-n", namespace).get("status", {})
        return status if status.get("reason") == wanted else None

    pulled = wait_for(lambda: reason_of("image-never-built", "ImagePullError"), 180, interval=1,
                      what="ImagePullError")
    assert "ErrImagePull" in pulled["conditions"][0]["message"] or "ImagePullBackOff" in json.dumps(pulled)
    failed = wait_for(lambda: get_json(mmft, "datasetprep", "labels-missing", "-n", namespace).get("status", {})
                       .get("phase") == "Failed" and get_json(mmft, "datasetprep", "labels-missing", "-n", namespace)
                       ["status"], 300, interval=1, what="the failed dataprep")  # fmt: skip
    assert "labels.csv" in json.dumps(failed) or "exit" in json.dumps(failed).lower(), failed


def _sample(name: str) -> dict:
    import yaml

    return yaml.safe_load((SAMPLES / name).read_text())


def _trainer_pods(cluster, namespace: str) -> list[dict]:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "app.kubernetes.io/component=trainer")["items"]
    return sorted(pods, key=lambda pod: pod["metadata"]["creationTimestamp"])


def _port_forward_status(cluster, namespace: str, target: str) -> int:
    from cluster_helpers import free_port

    port = free_port()
    forward = subprocess.Popen(
        [str(kubectl_path()), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "port-forward", target,
         f"{port}:80"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return response.status
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        forward.terminate()
        forward.wait(timeout=10)
