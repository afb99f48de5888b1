"""`helm install` of deploy/helm/mmft into a local control plane of its own (the chart's cluster-scoped objects
would collide with the session cluster's kustomize install): the operator's Deployment becomes available on the
simulated nodes with two replicas and a disruption budget, the monitoring objects are accepted by the real API
server against the real Prometheus Operator and Google Cloud Managed Prometheus CRDs, an upgrade back to one replica
drops the budget, and an uninstall leaves the CRDs (and so every user's resources) in place."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from cluster_helpers import ROOT, wait_for
from mmft_localcluster import LocalCluster, kubectl_path
from mmft_localcluster.crds import wait_established
from mmft_localcluster.paths import monitoring_crds_dir, tool_path

pytestmark = pytest.mark.both_minors

CHART = ROOT / "deploy/helm/mmft"
NAMESPACE = "mmft-system"


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory, backend):
    local = LocalCluster(tmp_path_factory.mktemp("helmcluster"), kubernetes_version=backend.kubernetes_version)
    try:
        yield local.up()
    finally:
        local.down()


@pytest.fixture(scope="module")
def kubectl(own_cluster):
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(kubectl_path()), f"--kubeconfig={own_cluster}", *args], capture_output=True,
                              text=True, timeout=180)
        assert not check or done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done

    return run


@pytest.fixture(scope="module")
def helm(own_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("helmhome")
    environment = {**os.environ, "KUBECONFIG": str(own_cluster), "HELM_CACHE_HOME": str(home / "cache"),
                   "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(tool_path("helm")), *args], capture_output=True, text=True, timeout=400,
                              env=environment)
        assert done.returncode == 0, f"helm {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    return run


@pytest.fixture(scope="module")
def monitoring_crds(kubectl, own_cluster):
    for crd in sorted(monitoring_crds_dir().glob("*/*.yaml")):
        kubectl("apply", "--server-side", "-f", str(crd))
    wait_established(own_cluster, "crd",
                     "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
                     "podmonitorings.monitoring.googleapis.com", "rules.monitoring.googleapis.com")


def get(kubectl, *args: str) -> dict:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def test_the_kustomize_monitoring_objects_pass_the_real_crds(kubectl, monitoring_crds):
    kubectl("create", "namespace", NAMESPACE, check=False)
    for folder in ("deploy/monitoring", "deploy/monitoring/gke"):
        kubectl("apply", "--server-side", "--dry-run=server", "-k", str(ROOT / folder))


def test_install_upgrade_uninstall(kubectl, helm, monitoring_crds):
    helm("install", "mmft", str(CHART), "--namespace", NAMESPACE, "--create-namespace",
         "--set", "image.repository=mmft-operator", "--set", "image.tag=dev", "--set", "replicaCount=2",
         "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.podMonitoring.enabled=true", "--set", "metrics.gkeRules.enabled=true",
         "--wait", "--timeout=300s")
    for crd in ("datasetpreps.mmft.io", "finetunejobs.mmft.io", "evaluations.mmft.io"):
        conditions = {c["type"]: c["status"] for c in get(kubectl, "crd", crd)["status"]["conditions"]}
        assert conditions["Established"] == "True"
    deployment = get(kubectl, "deployment", "mmft-operator", "-n", NAMESPACE)
    assert deployment["status"].get("availableReplicas") == 2
    budget = get(kubectl, "pdb", "mmft-operator", "-n", NAMESPACE)
    wait_for(lambda: get(kubectl, "pdb", "mmft-operator", "-n", NAMESPACE)["status"].get("disruptionsAllowed") == 1,
             timeout=60, what="the budget to allow one disruption")
    assert budget["spec"]["minAvailable"] == 1
    for kind in ("servicemonitor", "prometheusrule", "podmonitoring.monitoring.googleapis.com",
                 "rules.monitoring.googleapis.com"):
        assert get(kubectl, kind, "mmft-operator", "-n", NAMESPACE)["metadata"]["labels"][
            "app.kubernetes.io/managed-by"] == "Helm"
    # The user roles aggregate into the built-in edit role.
    wait_for(lambda: any("finetunejobs" in rule.get("resources", []) and "create" in rule.get("verbs", [])
                         for rule in get(kubectl, "clusterrole", "edit").get("rules", [])),
             timeout=60, what="mmft-edit aggregated into edit")

    helm("upgrade", "mmft", str(CHART), "--namespace", NAMESPACE, "--reuse-values", "--set", "replicaCount=1",
         "--wait", "--timeout=300s")
    deployment = get(kubectl, "deployment", "mmft-operator", "-n", NAMESPACE)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert kubectl("get", "pdb", "mmft-operator", "-n", NAMESPACE, check=False).returncode != 0

    helm("uninstall", "mmft", "--namespace", NAMESPACE, "--wait", "--timeout=120s")
    assert kubectl("get", "deployment", "mmft-operator", "-n", NAMESPACE, check=False).returncode != 0
    # Helm never deletes the CRDs of a chart's crds/ folder: uninstalling the operator keeps users' resources.
    assert get(kubectl, "crd", "finetunejobs.mmft.io")["metadata"]["name"] == "finetunejobs.mmft.io"
