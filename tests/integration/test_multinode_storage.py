"""A multi-node FineTuneJob on two simulated GPU nodes: its ranks land on two nodes, and no ReadWriteOnce claim is
mounted by pods on two nodes (GKE cannot attach one disk to a second node: Multi-Attach error)."""

from __future__ import annotations

import json

import pytest
import yaml
from cluster_helpers import ROOT, create_workload_service_account, wait_for
from mmft_operator.contracts.exit_codes import GANG_RESTART

pytestmark = pytest.mark.simulated_pods

SAMPLE = ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml"
WORKLOAD_SA = "mmft-workload"


def _two_node_finetunejob(name: str) -> dict:
    document = yaml.safe_load(SAMPLE.read_text())
    document["metadata"]["name"] = name
    spec = document["spec"]
    spec["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    spec.pop("outputVolume")  # refused for several nodes: the API server says so (tests/integration/invalid/36-*)
    spec.pop("huggingFaceTokenSecretRef")
    spec["compute"]["nodes"] = 2
    return document


def _items(kubectl, *args: str) -> list[dict]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)["items"]


def _claims_by_node(pods: list[dict]) -> dict[str, set[str]]:
    """Claim name -> nodes of the pods that mount it (a generic ephemeral volume's claim is <pod>-<volume>)."""
    mounted: dict[str, set[str]] = {}
    for pod in pods:
        for volume in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
            elif "ephemeral" in volume:
                claim = f"{pod['metadata']['name']}-{volume['name']}"
            else:
                continue
            mounted.setdefault(claim, set()).add(pod["spec"]["nodeName"])
    return mounted


def test_two_node_ranks_run_on_two_nodes_and_share_no_read_write_once_claim(kubectl, namespace, operator) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)  # Workload Identity: the bucket mounts
    name = "two-nodes"
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(_two_node_finetunejob(name)))
    selector = f"batch.kubernetes.io/job-name={name}-train"

    def both_ranks_scheduled() -> list[dict] | None:
        pods = [pod for pod in _items(kubectl, "pods", "-n", namespace, "-l", selector)
                if pod["spec"].get("nodeName")]
        indexes = {pod["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") for pod in pods}
        return pods if indexes == {"0", "1"} else None

    pods = wait_for(both_ranks_scheduled, timeout=120, what="both ranks scheduled")
    nodes = {pod["spec"]["nodeName"] for pod in pods}
    assert len(nodes) == 2, f"the two ranks share a node: {nodes}"
    for node in nodes:
        labels = json.loads(kubectl("get", "node", node, "-o", "json").stdout)["metadata"]["labels"]
        assert labels["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"

    claims = {claim["metadata"]["name"]: claim for claim in _items(kubectl, "pvc", "-n", namespace)}
    for claim, mounted_on in _claims_by_node(pods).items():
        modes = claims[claim]["spec"]["accessModes"] if claim in claims else []
        assert claim in claims, f"pods mount claim {claim}, which does not exist"
        if "ReadWriteOnce" in modes or "ReadWriteOncePod" in modes:
            assert len(mounted_on) == 1, f"ReadWriteOnce claim {claim} is mounted on nodes {sorted(mounted_on)}"
    assert f"{name}-output" not in claims, "a multi-node job must not create the single-node output claim"

    # Every rank reads and writes the same checkpoint directory: on the bucket, which every pod mounts.
    config = json.loads(kubectl("get", "configmap", f"{name}-axolotl", "-n", namespace, "-o", "json").stdout)
    output_dir = yaml.safe_load(config["data"]["axolotl.yaml"])["output_dir"]
    assert output_dir == f"/mnt/gcs/mmft/{namespace}/{name}/run"
    for pod in pods:
        mounts = {mount["mountPath"]: mount["name"] for mount in pod["spec"]["containers"][0]["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
        assert "csi" in volumes[mounts["/mnt/gcs"]] or "hostPath" in volumes[mounts["/mnt/gcs"]]
        assert "emptyDir" in volumes[mounts["/outputs"]], "scratch is the pod's own ephemeral storage"

    job = json.loads(kubectl("get", "job", f"{name}-train", "-n", namespace, "-o", "json").stdout)
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                "values": [GANG_RESTART]}} in rules

    kubectl("wait", f"ftj/{name}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    ftj = json.loads(kubectl("get", "ftj", name, "-n", namespace, "-o", "json").stdout)
    assert ftj["status"]["outputs"]["outputDir"] == output_dir
    assert "checkpointVolume" not in ftj["status"]["outputs"]
