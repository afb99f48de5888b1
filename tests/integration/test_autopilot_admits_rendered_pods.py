"""Every pod the operator renders passes the local cluster's simulated Autopilot admission
(docs/autopilot-admission.md): the samples, and a FineTuneJob and an Evaluation on each accelerator of the API at
each GPU count Autopilot offers.

RENDERED_SPECS is the list to extend with more variants (a field, a setting): each entry is a set of mmft resources;
each pod template they render is created, as a pod, through the real API server.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from mmft_operator.accelerators import PROFILES
from mmft_operator.render import render_documents

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_INPUTS = ROOT / "tests/unit/golden/inputs"
pytestmark = [pytest.mark.simulated_pods, pytest.mark.both_minors]


def _documents(*paths: Path) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def _sample(folder: str) -> list[dict]:
    return _documents(*sorted((ROOT / folder).glob("[!k]*.yaml")))


def _on_accelerator(documents: list[dict], accelerator: str, gpus: int) -> list[dict]:
    """The gemma3-melanoma sample's FineTuneJob and Evaluation moved onto this accelerator and GPU count."""
    moved = copy.deepcopy(documents)
    for document in moved:
        compute = document["spec"].get("compute")
        if document["kind"] == "FineTuneJob":
            document["spec"]["compute"] = {"accelerator": accelerator, "gpusPerNode": gpus}
        elif document["kind"] == "Evaluation":
            document["spec"]["compute"] = {**(compute or {}), "accelerator": accelerator, "gpus": gpus}
    return moved


RENDERED_SPECS: dict[str, list[dict]] = {
    "gemma3-melanoma-sample": _sample("deploy/samples/gemma3-melanoma"),
    "localcluster-tiny-pipeline": _sample("deploy/localcluster/samples/tiny-pipeline"),
    "finetunejob-multinode": _documents(GOLDEN_INPUTS / "finetunejob-multinode.yaml"),
    "finetunejob-l4-minimal": _documents(GOLDEN_INPUTS / "finetunejob-l4-minimal.yaml"),
    # Every escape hatch set (scheduling, env, extra volumes, flexStart and spot provisioning), on all three kinds.
    "escape-hatches": _documents(GOLDEN_INPUTS / "escape-hatches.yaml"),
    **{
        f"{label}-x{gpus}": _on_accelerator(_sample("deploy/samples/gemma3-melanoma"), label, gpus)
        for label, card in PROFILES.items()
        for gpus in card.autopilot_gpu_counts
    },
}


def rendered_pods(documents: list[dict], namespace: str) -> list[dict]:
    pods = []
    for child in render_documents(documents, namespace):
        if child["kind"] not in ("Job", "Deployment"):
            continue
        template = child["spec"]["template"]
        metadata = {**template.get("metadata", {}), "generateName": f"{child['metadata']['name']}-"}
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]})
    return pods


@pytest.mark.parametrize("case", sorted(RENDERED_SPECS))
def test_every_rendered_pod_is_admitted(kubectl, namespace, case):
    pods = rendered_pods(RENDERED_SPECS[case], namespace)
    assert pods, f"{case} renders no pod"
    for account in sorted({pod["spec"].get("serviceAccountName", "default") for pod in pods} - {"default"}):
        kubectl("create", "serviceaccount", account, "-n", namespace)
    # A PriorityClass a variant names must exist (the API server's Priority admission refuses the pod otherwise),
    # as a cluster admin would have made it; cluster-scoped, so made once and kept.
    for priority_class in sorted({pod["spec"].get("priorityClassName") for pod in pods} - {None}):
        if kubectl("get", "priorityclass", priority_class, check=False).returncode != 0:
            kubectl("create", "priorityclass", priority_class, "--value=1000")
    for pod in pods:
        result = kubectl("create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod), check=False)
        assert result.returncode == 0, f"{case}: {pod['metadata']['generateName']} refused: {result.stderr}"
        created = json.loads(result.stdout)
        # The simulation set every limit to its request, as Autopilot does.
        for container in created["spec"]["containers"]:
            for resource, request in container["resources"].get("requests", {}).items():
                assert container["resources"]["limits"][resource] == request, (case, container["name"], resource)
