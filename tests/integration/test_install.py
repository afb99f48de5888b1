"""deploy/: every overlay builds and passes server-side dry-run; the operator's RBAC is proven by running it as its
own ServiceAccount; its Prometheus endpoint moves while it works."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, token_kubeconfig, wait_for

pytestmark = pytest.mark.both_minors

OPERATOR_SA = "system:serviceaccount:mmft-system:mmft-operator"
OVERLAYS = ["base", "overlays/gke-autopilot", "overlays/local"]


@pytest.mark.parametrize("overlay", OVERLAYS + ["monitoring"])
def test_overlay_builds(kubectl, overlay: str) -> None:
    built = list(yaml.safe_load_all(kubectl("kustomize", str(ROOT / "deploy" / overlay)).stdout))
    assert built, f"{overlay} rendered nothing"


@pytest.mark.parametrize(
    ("overlay", "image"),
    [
        ("base", "us-docker.pkg.dev/mmft-project/mmft/mmft-operator:0.1.0"),
        ("overlays/gke-autopilot", "REGION-docker.pkg.dev/PROJECT_ID/mmft/mmft-operator:0.1.0"),
        ("overlays/local", "mmft-operator:dev"),
    ],
)
def test_each_overlay_sets_its_operator_image(kubectl, overlay: str, image: str) -> None:
    built = yaml.safe_load_all(kubectl("kustomize", str(ROOT / "deploy" / overlay)).stdout)
    deployment = next(o for o in built if o and o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_server_side_dry_run(kubectl, crds, overlay: str) -> None:
    # A dry run cannot create the namespace its other objects live in; everything else is checked for real.
    kubectl("apply", "--server-side", "-f", str(ROOT / "deploy/base/namespace.yaml"))
    kubectl("apply", "--server-side", "--dry-run=server", "-k", str(ROOT / "deploy" / overlay))


def test_gke_overlay_binds_workload_identity_and_keeps_one_recreated_replica(kubectl) -> None:
    objects = list(yaml.safe_load_all(kubectl("kustomize", str(ROOT / "deploy/overlays/gke-autopilot")).stdout))
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_rbac_names_exact_resources_and_verbs_without_wildcards() -> None:
    role = yaml.safe_load((ROOT / "deploy/base/clusterrole.yaml").read_text())
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("create", "jobs.batch", "yes"),
        ("patch", "finetunejobs.mmft.io --subresource=status", "yes"),
        ("watch", "pods", "yes"),
        ("create", "roles.rbac.authorization.k8s.io", "yes"),
        ("get", "secrets", "no"),
        ("list", "secrets", "no"),
        ("delete", "jobs.batch", "yes"),
        # The children that can leave the desired set (TensorBoard, rendezvous Service): listed and deleted.
        ("delete", "deployments.apps", "yes"),
        ("delete", "services", "yes"),
        ("list", "deployments.apps", "yes"),
        ("delete", "configmaps", "no"),
        ("delete", "persistentvolumeclaims", "no"),
        ("delete", "rolebindings.rbac.authorization.k8s.io", "no"),
        ("delete", "pods", "no"),
        ("patch", "finetunejobs.mmft.io", "no"),
        ("create", "clusterroles.rbac.authorization.k8s.io", "no"),
        ("create", "pods", "no"),
        ("watch", "events", "yes"),
        ("watch", "serviceaccounts", "yes"),
        ("watch", "deployments.apps", "yes"),
        ("patch", "serviceaccounts", "no"),
    ],
)
def test_operator_account_can_do_what_it_needs_and_nothing_else(kubectl, installed, verb, resource, allowed) -> None:
    answer = kubectl("auth", "can-i", verb, *resource.split(), "--all-namespaces", f"--as={OPERATOR_SA}", check=False)
    assert answer.stdout.strip() == allowed, f"can-i {verb} {resource}: {answer.stdout} {answer.stderr}"


def _metric(port: int, name: str, labels: str = "") -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    pattern = rf"^{re.escape(name)}{{[^}}]*{re.escape(labels)}[^}}]*}} ([0-9.e+-]+)$"
    return sum(float(value) for value in re.findall(pattern, body, flags=re.MULTILINE))


@pytest.mark.simulated_pods
def test_operator_as_its_own_service_account_runs_the_samples_and_its_metrics_move(
    kubectl, cluster, installed, namespace, tmp_path: Path
) -> None:
    kubeconfig = token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
    try:
        wait_for(lambda: _reachable(operator.metrics_port), timeout=30, what="the metrics endpoint")
        before = _metric(operator.metrics_port, "mmft_reconciles_total", 'kind="FineTuneJob"')
        create_workload_service_account(kubectl, namespace)
        kubectl("create", "secret", "generic", "huggingface-credentials", "-n", namespace, "--from-literal=token=x")
        kubectl("apply", "-n", namespace, "-k", str(ROOT / "deploy/samples/gemma3-melanoma"))
        for name in ("dsp/isic2020", "ftj/gemma3-melanoma", "mmeval/gemma3-melanoma"):
            kubectl("wait", name, "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
        assert _metric(operator.metrics_port, "mmft_reconciles_total", 'kind="FineTuneJob"') > before
        succeeded = 'condition="Succeeded",kind="FineTuneJob",status="True"'
        wait_for(
            lambda: _metric(operator.metrics_port, "mmft_resources", succeeded) >= 1,
            timeout=30,
            what="the Succeeded FineTuneJob counted in mmft_resources",
        )
        assert _metric(operator.metrics_port, "mmft_reconcile_duration_seconds_count", 'kind="DatasetPrep"') > 0
        body = urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).read().decode()
        for process_metric in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
            value = re.search(rf"^{process_metric} ([0-9.e+-]+)$", body, flags=re.MULTILINE)
            assert value and float(value.group(1)) > 0, f"{process_metric} missing or zero"
    finally:
        operator.stop()
    denials = re.findall(r'User "system:serviceaccount:mmft-system:mmft-operator" cannot [^"]+', operator.log())
    assert denials == [], denials[:5]


def _reachable(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        return True
    except OSError:
        return False


def test_kubectl_wait_for_succeeded_works_on_all_kinds(kubectl) -> None:
    # kstatus/Flux and kubectl wait key on condition types; the CRD status schema must declare them map-keyed.
    crd = json.loads(kubectl("get", "crd", "finetunejobs.mmft.io", "-o", "json").stdout)
    conditions = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == ["type"]
