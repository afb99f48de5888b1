"""The mmft.io API on a real kube-apiserver: CRDs, samples, kubectl explain/get, and the invalid-resource corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.both_minors

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def _expectations(path: Path) -> list[str]:
    return re.findall(r"^# expect: (.+)$", path.read_text(), flags=re.MULTILINE)


def test_the_api_server_runs_the_kubernetes_version_the_session_asked_for(kubectl, backend) -> None:
    """make test's second pass (MMFT_TEST_KUBERNETES_VERSION=previous) really talks to the older API server."""
    if backend.kubeconfig is not None:
        pytest.skip("a cluster the tests did not start runs whatever version it runs")
    from mmft_localcluster.paths import resolve_kubernetes_version

    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert server == resolve_kubernetes_version(backend.kubernetes_version)


def test_corpus_is_large_enough_and_every_case_says_what_it_expects() -> None:
    assert len(INVALID) >= 20
    for path in INVALID:
        assert _expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_api_server_rejects_invalid_resource_naming_the_field(kubectl, crds, namespace, path: Path) -> None:
    result = kubectl("apply", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    for expected in _expectations(path):
        assert expected in result.stderr, f"{path.name}: {expected!r} not in:\n{result.stderr}"
    kind = yaml.safe_load(path.read_text())["kind"].lower()
    assert kubectl("get", kind, "-n", namespace, "-o", "name").stdout.strip() == "", "nothing may be stored"


def test_samples_apply_and_kubectl_get_mmft_lists_all_three_kinds(kubectl, crds, namespace) -> None:
    kubectl("apply", "-n", namespace, "-k", str(ROOT / "deploy/samples/gemma3-melanoma"))
    listed = kubectl("get", "mmft", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == [
        "datasetprep.mmft.io/isic2020",
        "evaluation.mmft.io/gemma3-melanoma",
        "finetunejob.mmft.io/gemma3-melanoma",
    ]
    stored = json.loads(kubectl("get", "ftj", "gemma3-melanoma", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["training"]["lora"]["targetModules"].startswith("model.language_model"), "defaults applied"
    assert stored["spec"]["tensorboard"] == {"enabled": True, "serviceType": "ClusterIP"}


def test_printer_columns_show_what_users_check_first(kubectl, crds, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", str(ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml"))
    header = kubectl("get", "ftj", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "REASON", "PROGRESS", "LOSS", "MODEL", "ACCELERATOR", "AGE"]
    wide = kubectl("get", "ftj", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert {"ETA", "GPUS", "NODES"} <= set(wide)


def test_kubectl_explain_shows_field_descriptions(kubectl, crds) -> None:
    explained = kubectl("explain", "finetunejob.spec").stdout
    assert "Desired state of a FineTuneJob" in explained
    assert "baseModel" in explained and "Hugging Face model id" in explained
    lora = kubectl("explain", "finetunejob.spec.training.lora.targetModules").stdout
    assert "Gemma 3" in lora
    assert (
        "split fractions" in kubectl("explain", "datasetprep.spec.split").stdout.lower()
        or "Stratified" in kubectl("explain", "datasetprep.spec.split").stdout
    )


def test_run_shaping_fields_are_immutable_once_started_but_suspend_is_not(kubectl, crds, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", str(ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml"))

    def patch(spec: str, check: bool = True):  # noqa: ANN202
        return kubectl("patch", "ftj", "gemma3-melanoma", "-n", namespace, "--type=merge", "-p", spec, check=check)

    def set_status(status: str) -> None:
        kubectl("patch", "ftj", "gemma3-melanoma", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                status)

    # Before the run starts the spec may change freely (GitOps fixes typos).
    patch('{"spec":{"training":{"learningRate":0.0001}}}')
    # The Job exists but waits (for a node, for quota): what shapes the run may still change, the inputs the Job was
    # built from may not.
    set_status('{"status":{"startTime":"2026-11-29T10:00:00Z"}}')
    patch('{"spec":{"training":{"learningRate":0.00015},"compute":{"accelerator":"nvidia-l4"}}}')
    refused = patch('{"spec":{"dataset":{"datasetPrepRef":{"name":"other"}}}}', check=False)
    assert refused.returncode != 0
    assert "spec.dataset is immutable once the workload Job exists (status.startTime)" in refused.stderr
    # A pod of the run started: the run-shaping fields lock too.
    set_status('{"status":{"runStartedTime":"2026-11-29T10:05:00Z"}}')
    refused = patch('{"spec":{"training":{"learningRate":0.0002}}}', check=False)
    assert refused.returncode != 0
    assert "spec.training is immutable once the run's first pod started (status.runStartedTime)" in refused.stderr
    patch('{"spec":{"suspend":true}}')


def test_every_escape_hatch_is_accepted_and_renders_children_the_api_server_accepts(kubectl, crds, namespace) -> None:
    """The valid side of the hatches: the resources with every hatch set are stored as written, and every child the
    operator renders from them passes the API server's own validation of Jobs, Deployments and pods (server-side
    dry run: affinity, tolerations, env sources and volumes as the API server reads them)."""
    from mmft_operator.render import render_documents

    hatches = ROOT / "tests/unit/golden/inputs/escape-hatches.yaml"
    kubectl("apply", "-n", namespace, "-f", str(hatches))
    stored = json.loads(kubectl("get", "ftj", "hatch-train", "-n", namespace, "-o", "json").stdout)["spec"]
    assert stored["scheduling"]["nodeSelector"]["cloud.google.com/reservation-affinity"] == "specific"
    assert stored["tracking"]["wandb"]["apiKeySecretRef"] == {"name": "wandb", "key": "api-key"}
    documents = [doc for doc in yaml.safe_load_all(hatches.read_text()) if doc]
    children = render_documents(documents, namespace)
    assert {child["kind"] for child in children} >= {"Job", "Deployment", "ConfigMap"}
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                     input=yaml.safe_dump_all(children), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(children)
