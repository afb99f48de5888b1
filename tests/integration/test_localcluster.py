"""The local control plane behaves like the GKE Autopilot cluster it stands for (docs/localcluster.md)."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from mmft_localcluster.gke_nodes import GPU_SHAPES

# Integration (a real control plane) with kwok playing the kubelets: the annotations choose pod outcomes.
pytestmark = [pytest.mark.integration, pytest.mark.simulated_pods]

A100 = "nvidia-tesla-a100"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def apply(kubectl, manifest: dict, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def wait_for(kubectl, resource: str, condition: str, namespace: str, timeout: int = 60) -> None:
    kubectl("wait", "-n", namespace, f"--for={condition}", f"--timeout={timeout}s", resource)


def job(name: str, annotations: dict | None = None, gpus: int = 0, accelerator: str | None = None) -> dict:
    container = {"name": "main", "image": "us-docker.pkg.dev/mmft/trainer:test", "command": ["train"]}
    pod_spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if accelerator:
        pod_spec["nodeSelector"] = {"cloud.google.com/gke-accelerator": accelerator}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"annotations": annotations or {}}, "spec": pod_spec},
        },
    }


def pod(name: str, annotations: dict | None = None, **spec) -> dict:
    container = {"name": "main", "image": "us-docker.pkg.dev/mmft/trainer:test", **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def job_pod(kubectl, namespace: str, job_name: str) -> dict:
    pods = get(kubectl, "pods", "-n", namespace, "-l", f"job-name={job_name}")["items"]
    assert len(pods) == 1, f"expected one pod of job {job_name}, found {len(pods)}"
    return pods[0]


def timestamp(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_simulated_nodes_are_ready_with_gke_labels_taints_and_capacity(kubectl):
    nodes = {node["metadata"]["name"]: node for node in get(kubectl, "nodes", "-l", "type=kwok")["items"]}
    gpu_nodes = {f"gke-sim-{shape.short_name}-std-{index}" for shape in GPU_SHAPES.values() for index in (0, 1)}
    started_with = gpu_nodes | {"gke-sim-cpu-0", "gke-sim-cpu-1", "gke-sim-a100-spot-0"}
    assert started_with <= set(nodes), f"missing: {sorted(started_with - set(nodes))}"

    for name, node in nodes.items():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", name
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["topology.kubernetes.io/zone"].startswith("us-central1-")
        accelerator = labels.get("cloud.google.com/gke-accelerator")
        if accelerator is None:
            assert labels["node.kubernetes.io/instance-type"] == "e2-standard-16", name
            assert "nvidia.com/gpu" not in node["status"]["allocatable"]
            assert not node["spec"].get("taints"), name
            continue
        shape = GPU_SHAPES[accelerator]
        assert labels["node.kubernetes.io/instance-type"] == shape.machine_type
        assert labels["cloud.google.com/machine-family"] == shape.machine_family
        assert labels["cloud.google.com/gke-accelerator-count"] == "8"
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        spot_taint = {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}
        is_spot = labels.get("cloud.google.com/gke-spot") == "true"
        assert (spot_taint in node["spec"]["taints"]) == is_spot, name
    assert nodes["gke-sim-a100-spot-0"]["metadata"]["labels"]["cloud.google.com/gke-accelerator"] == A100


def test_gpu_job_is_tolerated_by_admission_lands_on_a100_and_completes(kubectl, namespace):
    apply(kubectl, job("finetune", gpus=1, accelerator=A100), namespace)
    wait_for(kubectl, "job/finetune", "condition=Complete", namespace)

    scheduled = job_pod(kubectl, namespace, "finetune")
    assert GPU_TOLERATION in scheduled["spec"]["tolerations"]  # added by ExtendedResourceToleration
    node = get(kubectl, "node", scheduled["spec"]["nodeName"])
    assert node["metadata"]["labels"]["cloud.google.com/gke-accelerator"] == A100
    assert "cloud.google.com/gke-spot" not in node["metadata"]["labels"]  # no Spot toleration, so not the Spot node
    assert scheduled["status"]["phase"] == "Succeeded"
    assert scheduled["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_run_seconds_annotation_keeps_a_job_pod_running_that_long(kubectl, namespace):
    apply(kubectl, job("slow", annotations={"kwok.mmft.io/run-seconds": "4"}), namespace)
    wait_for(kubectl, "job/slow", "condition=Complete", namespace)

    finished = job_pod(kubectl, namespace, "slow")
    terminated = finished["status"]["containerStatuses"][0]["state"]["terminated"]
    ran = timestamp(terminated["finishedAt"]) - timestamp(finished["status"]["startTime"])
    assert ran >= datetime.timedelta(seconds=3), ran  # RFC 3339 seconds: 4 s may read as 3


@pytest.mark.parametrize(
    ("annotations", "exit_code", "reason"),
    [
        ({"kwok.mmft.io/exit-code": "78"}, 78, "Error"),
        ({"kwok.mmft.io/terminated-reason": "OOMKilled"}, 137, "OOMKilled"),
    ],
    ids=["exit-code", "oom-killed"],
)
def test_terminating_annotations_fail_the_pod_with_that_container_state(
    kubectl, namespace, annotations, exit_code, reason
):
    apply(kubectl, pod("worker", annotations), namespace)
    wait_for(kubectl, "pod/worker", "jsonpath={.status.phase}=Failed", namespace)

    terminated = get(kubectl, "pod", "worker", "-n", namespace)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (exit_code, reason)


def test_failed_job_pod_fails_the_job(kubectl, namespace):
    apply(kubectl, job("bad-config", annotations={"kwok.mmft.io/exit-code": "78"}), namespace)
    wait_for(kubectl, "job/bad-config", "condition=Failed", namespace)
    terminated = job_pod(kubectl, namespace, "bad-config")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 78


def test_waiting_reason_annotation_keeps_the_container_waiting(kubectl, namespace):
    apply(kubectl, pod("no-image", {"kwok.mmft.io/waiting-reason": "ErrImagePull"}), namespace)
    wait_for(
        kubectl, "pod/no-image", "jsonpath={.status.containerStatuses[0].state.waiting.reason}=ErrImagePull", namespace
    )
    time.sleep(2)  # it must stay so, not move on to Running

    status = get(kubectl, "pod", "no-image", "-n", namespace)["status"]
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImagePull"


def test_preempt_annotation_fails_the_pod_with_a_disruption_condition(kubectl, namespace):
    apply(kubectl, pod("spot-worker", {"kwok.mmft.io/preempt": "true"}), namespace)
    wait_for(kubectl, "pod/spot-worker", "jsonpath={.status.phase}=Failed", namespace)

    conditions = get(kubectl, "pod", "spot-worker", "-n", namespace)["status"]["conditions"]
    disruption = next(c for c in conditions if c["type"] == "DisruptionTarget")
    assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")


def test_standard_rwo_claim_binds_once_its_pod_is_scheduled(kubectl, namespace):
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "checkpoints"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}}},
    }
    apply(kubectl, claim, namespace)
    waiting = get(kubectl, "pvc", "checkpoints", "-n", namespace)
    assert waiting["spec"]["storageClassName"] == "standard-rwo"  # the default class, set by admission
    assert waiting["status"]["phase"] == "Pending"  # WaitForFirstConsumer: nothing yet

    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "checkpoints"}}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    apply(kubectl, pod("consumer", volumes=volumes, container={"volumeMounts": mounts}), namespace)
    wait_for(kubectl, "pvc/checkpoints", "jsonpath={.status.phase}=Bound", namespace)
    wait_for(kubectl, "pod/consumer", "jsonpath={.status.phase}=Running", namespace)

    bound = get(kubectl, "pvc", "checkpoints", "-n", namespace)
    volume = get(kubectl, "pv", bound["spec"]["volumeName"])
    assert volume["spec"]["csi"]["driver"] == "pd.csi.storage.gke.io"
    assert volume["spec"]["capacity"]["storage"] == "50Gi"
    node = get(kubectl, "node", get(kubectl, "pod", "consumer", "-n", namespace)["spec"]["nodeName"])
    zone_term = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert zone_term["values"] == [node["metadata"]["labels"]["topology.kubernetes.io/zone"]]


def test_restricted_pod_security_namespace_rejects_a_privileged_pod(kubectl, namespace):
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    privileged = pod("root", container={"securityContext": {"privileged": True}})

    result = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(privileged), check=False)

    assert result.returncode != 0
    assert "violates PodSecurity" in result.stderr and "privileged" in result.stderr


def test_service_account_needs_rbac_to_list_secrets(kubectl, namespace):
    subject = f"--as=system:serviceaccount:{namespace}:default"
    denied = kubectl("auth", "can-i", "list", "secrets", "-n", namespace, subject, check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")

    kubectl("create", "role", "secret-reader", "--verb=list", "--resource=secrets", "-n", namespace)
    kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=secret-reader",
        f"--serviceaccount={namespace}:default",
        "-n",
        namespace,
    )
    allowed = kubectl("auth", "can-i", "list", "secrets", "-n", namespace, subject, check=False)
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")


def test_garbage_collector_deletes_a_child_of_a_deleted_owner(kubectl, namespace):
    kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get(kubectl, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    apply(kubectl, child, namespace)

    kubectl("delete", "configmap", "owner", "-n", namespace)
    kubectl("wait", "-n", namespace, "--for=delete", "--timeout=60s", "configmap/child")
    assert kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0


def test_added_gpu_nodes_are_ready_and_take_gpu_pods(kubectl, namespace, cluster):
    from mmft_localcluster import LocalCluster

    if not (cluster.parent / "state.json").exists():
        pytest.skip("MMFT_KUBECONFIG points at a cluster this session did not start; adding nodes needs its state dir")
    before = get(kubectl, "nodes", "-l", "cloud.google.com/gke-accelerator=nvidia-h100-80gb")["items"]
    names = LocalCluster(cluster.parent).add_gpu_nodes("nvidia-h100-80gb", 1)
    try:
        assert names[0] not in {node["metadata"]["name"] for node in before}
        pinned = job("pinned", gpus=8, accelerator="nvidia-h100-80gb")
        pinned["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"] = names[0]
        apply(kubectl, pinned, namespace)
        wait_for(kubectl, "job/pinned", "condition=Complete", namespace)
    finally:
        kubectl("delete", "node", *names)
