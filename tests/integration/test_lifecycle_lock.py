"""When the spec locks, on the local control plane (kwok plays the GPU nodes and the pods' kubelet).

A FineTuneJob that waits for an accelerator with no free GPU is moved to another accelerator with `kubectl patch`,
as a user would: the operator deletes the waiting Job and creates one on the new accelerator, whose pod runs. Once a
pod of the run started, the API server refuses another compute change with a message naming the rule.
"""

from __future__ import annotations

import json

import pytest
import yaml
from cluster_helpers import ROOT, create_workload_service_account, wait_for

pytestmark = pytest.mark.simulated_pods

SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
# The sample's card, one GPU per pod (an Autopilot shape the admission simulation admits); every GPU of its nodes
# is taken by the placeholders below.
BUSY = "nvidia-tesla-a100"
FREE = "nvidia-l4"
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"
NAME = "moved"
JOB = f"{NAME}-train"


def _get(kubectl, *args: str) -> dict:
    result = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _occupy_every_gpu(kubectl, namespace: str, accelerator: str) -> None:
    """Pods that hold every GPU of the accelerator's nodes (kwok keeps a pod that no Job owns Running): the
    FineTuneJob's pod finds no free GPU, as on a cluster whose A100s are all taken."""
    nodes = _get(kubectl, "nodes", "-l", f"{ACCELERATOR_LABEL}={accelerator}")["items"]
    assert nodes, f"the local cluster has no {accelerator} node"
    for index, node in enumerate(nodes):
        gpus = node["status"]["allocatable"]["nvidia.com/gpu"]
        placeholder = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"gpu-holder-{index}", "namespace": namespace},
            "spec": {
                "nodeSelector": {ACCELERATOR_LABEL: accelerator, "kubernetes.io/hostname": node["metadata"]["name"]},
                "tolerations": [{"operator": "Exists"}],  # the GPU taint, and Spot's on the Spot node
                "containers": [{"name": "holder", "image": "registry.k8s.io/pause:3.10",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": gpus},
                                              "limits": {"nvidia.com/gpu": gpus}}}],
            },
        }  # fmt: skip
        kubectl("apply", "-f", "-", input=yaml.safe_dump(placeholder))
    kubectl("wait", "pod", "--all", "-n", namespace, "--for=jsonpath={.status.phase}=Running", "--timeout=60s")


def _finetunejob(accelerator: str) -> dict:
    document = yaml.safe_load((SAMPLES / "finetunejob.yaml").read_text())
    document["metadata"]["name"] = NAME
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["spec"]["compute"]["accelerator"] = accelerator
    # Long enough to see the pod Running and to try a change while it runs; then it succeeds.
    document["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": "20"}}
    return document


def _patch_compute(kubectl, namespace: str, accelerator: str, check: bool = True):  # noqa: ANN202
    return kubectl("patch", "ftj", NAME, "-n", namespace, "--type=merge",
                   "-p", json.dumps({"spec": {"compute": {"accelerator": accelerator}}}), check=check)


def test_a_waiting_finetunejob_moved_to_another_accelerator_runs_there_then_its_spec_locks(
    kubectl, namespace, operator
) -> None:
    create_workload_service_account(kubectl, namespace)
    kubectl("create", "secret", "generic", "huggingface-credentials", "-n", namespace, "--from-literal=token=hf_x")
    _occupy_every_gpu(kubectl, namespace, BUSY)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_finetunejob(BUSY)))

    waiting = wait_for(
        lambda: (ftj := _get(kubectl, "ftj", NAME, "-n", namespace)).get("status", {}).get("reason") == "Unschedulable"
        and ftj,
        timeout=90, what="the FineTuneJob to wait as Unschedulable",
    )
    assert waiting["status"].get("startTime"), "the Job exists: the lock of before (status.startTime) would refuse"
    assert "runStartedTime" not in waiting["status"]
    old_job = _get(kubectl, "job", JOB, "-n", namespace)
    old_uid = old_job["metadata"]["uid"]

    _patch_compute(kubectl, namespace, FREE)  # accepted: no pod of the run started

    def new_job() -> dict | None:
        job = _get(kubectl, "job", JOB, "-n", namespace)
        return job if job and job["metadata"]["uid"] != old_uid else None

    replaced = wait_for(new_job, timeout=90, what="the waiting Job to be replaced")
    assert replaced["spec"]["template"]["spec"]["nodeSelector"][ACCELERATOR_LABEL] == FREE
    jobs = _get(kubectl, "jobs", "-n", namespace)["items"]
    assert [job["metadata"]["uid"] for job in jobs] == [replaced["metadata"]["uid"]], "the old Job is gone"
    events = _get(kubectl, "events", "-n", namespace, "--field-selector",
                  f"involvedObject.kind=FineTuneJob,involvedObject.name={NAME},reason=WaitingJobReplaced")["items"]
    assert events and f"accelerator {BUSY} -> {FREE}" in events[0]["message"], events

    def running_pod() -> dict | None:
        pods = _get(kubectl, "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={JOB}")["items"]
        return next((pod for pod in pods if pod["metadata"]["ownerReferences"][0]["uid"] == replaced["metadata"]["uid"]
                     and pod["status"]["phase"] in ("Running", "Succeeded")), None)

    pod = wait_for(running_pod, timeout=90, what="a pod of the new Job to run")
    assert pod["spec"]["nodeSelector"][ACCELERATOR_LABEL] == FREE
    assert pod["spec"]["nodeName"] in {
        node["metadata"]["name"] for node in _get(kubectl, "nodes", "-l", f"{ACCELERATOR_LABEL}={FREE}")["items"]
    }
    locked = wait_for(
        lambda: (ftj := _get(kubectl, "ftj", NAME, "-n", namespace)).get("status", {}).get("runStartedTime") and ftj,
        timeout=60, what="status.runStartedTime",
    )
    assert locked["status"]["phase"] in ("Running", "Succeeded")

    refused = _patch_compute(kubectl, namespace, BUSY, check=False)
    assert refused.returncode != 0
    assert "spec.compute is immutable once the run's first pod started (status.runStartedTime)" in refused.stderr

    kubectl("wait", f"ftj/{NAME}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    finished = _get(kubectl, "ftj", NAME, "-n", namespace)
    assert finished["spec"]["compute"]["accelerator"] == FREE
    assert finished["status"]["runStartedTime"] == locked["status"]["runStartedTime"], "kept once set"


# -- queued by Kueue: a suspended Job whose Workload finds no quota is waiting too --------------------------------


def _flavored_queue(namespace: str, quota_gpus: dict[str, int]) -> str:
    """A ResourceFlavor per accelerator and one ClusterQueue (LocalQueue `training`) with `quota_gpus` GPUs of each."""
    flavors = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": f"{namespace}-{index}"},
         "spec": {"nodeLabels": {ACCELERATOR_LABEL: accelerator}}}
        for index, accelerator in enumerate(quota_gpus)
    ]
    quota = {"cpu": "96", "memory": "680Gi", "ephemeral-storage": "1Ti"}
    cluster_queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": namespace},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [{
                "coveredResources": [*quota, "nvidia.com/gpu"],
                "flavors": [
                    {"name": flavor["metadata"]["name"],
                     "resources": [{"name": key, "nominalQuota": value}
                                   for key, value in {**quota, "nvidia.com/gpu": str(gpus)}.items()]}
                    for flavor, gpus in zip(flavors, quota_gpus.values(), strict=True)
                ],
            }],
        },
    }  # fmt: skip
    local_queue = {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
                   "metadata": {"name": "training", "namespace": namespace}, "spec": {"clusterQueue": namespace}}
    return yaml.safe_dump_all([*flavors, cluster_queue, local_queue])


@pytest.fixture
def kueue_namespace(kubectl, namespace, kueue):
    yield namespace
    # While Kueue still runs: it holds finalizers on Workloads, ClusterQueues and ResourceFlavors in use.
    kubectl("delete", "ftj", "--all", "-n", namespace, "--timeout=60s")
    wait_for(lambda: not _get(kubectl, "workloads.kueue.x-k8s.io", "-n", namespace).get("items"), timeout=60,
             what="the Workloads to be deleted")
    kubectl("delete", "clusterqueue", namespace, "--ignore-not-found", "--timeout=60s")
    for index in range(2):
        kubectl("delete", "resourceflavor", f"{namespace}-{index}", "--ignore-not-found", "--timeout=60s")


def test_a_finetunejob_queued_by_kueue_without_quota_for_its_accelerator_moves_to_one_with_quota(
    kubectl, kueue_namespace, operator
) -> None:
    namespace = kueue_namespace
    create_workload_service_account(kubectl, namespace)
    kubectl("apply", "-f", "-", input=_flavored_queue(namespace, {BUSY: 0, FREE: 4}))
    document = _finetunejob(BUSY)
    document["spec"]["queueName"] = "training"
    document["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": "1"}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    wait_for(lambda: _get(kubectl, "ftj", NAME, "-n", namespace).get("status", {}).get("reason") == "QueuedByKueue",
             timeout=120, what="the FineTuneJob to be queued by Kueue")
    queued_uid = _get(kubectl, "job", JOB, "-n", namespace)["metadata"]["uid"]

    _patch_compute(kubectl, namespace, FREE)

    kubectl("wait", f"ftj/{NAME}", "-n", namespace, "--for=condition=Succeeded", "--timeout=180s")
    job = _get(kubectl, "job", JOB, "-n", namespace)
    assert job["metadata"]["uid"] != queued_uid, "the queued Job was replaced"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "training"
    assert job["spec"]["template"]["spec"]["nodeSelector"][ACCELERATOR_LABEL] == FREE

    def workload_owners() -> list[str]:
        workloads = _get(kubectl, "workloads.kueue.x-k8s.io", "-n", namespace)["items"]
        return [workload["metadata"]["ownerReferences"][0]["uid"] for workload in workloads]

    wait_for(lambda: workload_owners() == [job["metadata"]["uid"]], timeout=60,
             what="the queued Job's Workload to go with it")
