"""Children follow the spec, on the local control plane with the operator running as its own ServiceAccount (the
RBAC of deploy/base/clusterrole.yaml): a TensorBoard turned off is deleted, a finished FineTuneJob's TensorBoard is
deleted once its TTL ran out (through the timed requeue, long before the 5-minute resync), and objects that merely
carry the owner's labels are never touched. The planner's side is tests/unit/test_plan_children_lifecycle.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, token_kubeconfig, wait_for
from mmft_operator import naming

# kwok.mmft.io/* annotations choose how long the simulated trainer runs: meaningful only where pods are simulated.
pytestmark = pytest.mark.simulated_pods

SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
WORKLOAD_SA = "mmft-workload"


@pytest.fixture
def own_operator(kubectl, cluster, installed, tmp_path: Path):
    """The operator as its own ServiceAccount: a missing RBAC verb shows as a denial in its log."""
    process = OperatorProcess(token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig"),
                              tmp_path / "operator.log").start()
    try:
        yield process
    finally:
        process.stop()
    denials = re.findall(r'User "system:serviceaccount:mmft-system:mmft-operator" cannot [^"]+', process.log())
    assert denials == [], denials[:5]


def _finetunejob(kubectl, namespace: str, name: str, **spec_changes) -> None:
    document = yaml.safe_load((SAMPLES / "finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["spec"].update(spec_changes)
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def _prepare(kubectl, namespace: str) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)
    kubectl("create", "secret", "generic", "huggingface-credentials", "-n", namespace, "--from-literal=token=x")


def _get(kubectl, namespace: str, *what: str) -> dict | None:
    result = kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _exists(kubectl, namespace: str, kind: str, name: str) -> bool:
    return _get(kubectl, namespace, kind, name) is not None


def _lookalike(kubectl, namespace: str, owner: str, kind: str, name: str, owner_reference: dict | None) -> None:
    """An object with the owner's labels (what the operator lists children by) that the owner does not control."""
    metadata = {"name": name, "namespace": namespace, "labels": naming.labels("FineTuneJob", owner, "tensorboard")}
    if owner_reference is not None:
        metadata["ownerReferences"] = [owner_reference]
    if kind == "Service":
        spec = {"ports": [{"port": 80}], "selector": {"app": name}}
        body = {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
    else:
        template = {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}
        spec = {"replicas": 0, "selector": {"matchLabels": {"app": name}}, "template": template}
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))


def test_tensorboard_turned_off_is_deleted_and_lookalikes_stay(kubectl, namespace, own_operator) -> None:
    _prepare(kubectl, namespace)
    name = "board-off"
    board = naming.tensorboard(name)
    _finetunejob(kubectl, namespace, name, podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "600"}})
    wait_for(lambda: _exists(kubectl, namespace, "deployment", board) and _exists(kubectl, namespace, "service", board),
             timeout=120, what="the TensorBoard Deployment and Service")
    _lookalike(kubectl, namespace, name, "Service", f"{name}-lookalike", None)
    _lookalike(kubectl, namespace, name, "Deployment", f"{name}-lookalike", None)

    kubectl("patch", "ftj", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"tensorboard":{"enabled":false}}}')
    wait_for(lambda: not _exists(kubectl, namespace, "deployment", board)
             and not _exists(kubectl, namespace, "service", board), timeout=120,
             what="the TensorBoard Deployment and Service deleted")
    status = wait_for(lambda: (s := (_get(kubectl, namespace, "ftj", name) or {}).get("status", {}))
                      .get("observedGeneration") == 2 and s, timeout=60, what="status of generation 2")
    assert not {f"Deployment/{board}", f"Service/{board}"} & set(status["children"])
    assert _exists(kubectl, namespace, "service", f"{name}-lookalike")
    assert _exists(kubectl, namespace, "deployment", f"{name}-lookalike")
    # Everything else the job needs is still there: the Job keeps running.
    assert _exists(kubectl, namespace, "job", naming.job(name, "train"))
    assert _exists(kubectl, namespace, "configmap", naming.config_map(name))


def test_a_finished_jobs_tensorboard_goes_after_its_ttl(kubectl, namespace, own_operator) -> None:
    _prepare(kubectl, namespace)
    name = "board-ttl"
    board = naming.tensorboard(name)
    _finetunejob(kubectl, namespace, name, tensorboard={"enabled": True, "ttlSecondsAfterFinished": 5},
                 podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "8"}})
    wait_for(lambda: _exists(kubectl, namespace, "deployment", board), timeout=120, what="the TensorBoard")
    owner = _get(kubectl, namespace, "ftj", name)
    # Owned by the FineTuneJob, but not as its controller: not the operator's to delete.
    _lookalike(kubectl, namespace, name, "Deployment", f"{name}-lookalike",
               {"apiVersion": "mmft.io/v1alpha1", "kind": "FineTuneJob", "name": name,
                "uid": owner["metadata"]["uid"]})

    kubectl("wait", f"ftj/{name}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    # The resync runs every 5 minutes: only the requeue the planner asked for deletes it this soon.
    wait_for(lambda: not _exists(kubectl, namespace, "deployment", board)
             and not _exists(kubectl, namespace, "service", board), timeout=90,
             what="the finished job's TensorBoard deleted after its TTL")
    status = wait_for(lambda: (s := _get(kubectl, namespace, "ftj", name)["status"]).get("tensorboard", {})
                      .get("state") == "Removed" and s, timeout=30, what="status.tensorboard Removed")
    assert status["phase"] == "Succeeded"
    assert status["tensorboard"]["removeAt"] >= status["completionTime"]
    assert not {f"Deployment/{board}", f"Service/{board}"} & set(status["children"])
    assert _exists(kubectl, namespace, "deployment", f"{name}-lookalike")
