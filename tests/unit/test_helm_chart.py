"""The Helm chart (deploy/helm/mmft): lints, renders the kustomize base's objects with its defaults, and exposes
every operator setting as a documented value. Uses helm built from its Go module (localcluster/build-tools.sh)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mmft_localcluster import kubectl_path
from mmft_localcluster.paths import tool_path
from mmft_operator.settings import ENV_PREFIX, OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/mmft"
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance",
               "app.kubernetes.io/version"}
# Settings the chart sets from its own values, not from `settings`.
CHART_MANAGED_SETTINGS = {"workload_image", "tensorboard_image", "metrics_port", "namespaces", "lease_namespace"}


@pytest.fixture(scope="module")
def helm():
    return str(tool_path("helm"))


def template(helm: str, *values: str) -> list[dict]:
    done = subprocess.run([helm, "template", "mmft", str(CHART), "--namespace", "mmft-system", *values],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def without_helm_labels(obj: dict) -> dict:
    obj = json.loads(json.dumps(obj))
    for meta in (obj["metadata"], ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}):
        labels = meta.get("labels") or {}
        for label in HELM_LABELS:
            labels.pop(label, None)
    return obj


def by_identity(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(obj["kind"], obj["metadata"]["name"]): without_helm_labels(obj) for obj in objects}


def test_copies_of_deploy_files_are_current():
    done = subprocess.run([sys.executable, str(ROOT / "deploy/helm/sync_from_base.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("values", [[], ["--set", "replicaCount=2"], ["--set", "metrics.podMonitoring.enabled=true"]])
def test_chart_lints(helm, values):
    done = subprocess.run([helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_render_equals_the_kustomize_base(helm):
    built = subprocess.run([str(kubectl_path()), "kustomize", str(ROOT / "deploy/base")], capture_output=True,
                           text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    base = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    # The CRDs come from the chart's crds/ folder (helm installs them), the namespace from `--create-namespace`.
    base = [obj for obj in base if obj["kind"] not in ("CustomResourceDefinition", "Namespace")]
    assert by_identity(template(helm)) == by_identity(base)


def test_chart_crds_are_the_generated_ones():
    for crd in (ROOT / "crds").glob("mmft.io_*.yaml"):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text()


def test_two_replicas_roll_one_at_a_time_behind_a_disruption_budget(helm):
    objects = by_identity(template(helm, "--set", "replicaCount=2"))
    deployment = objects[("Deployment", "mmft-operator")]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "MMFT_LEASE_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in (
        container["env"]
    )
    budget = objects[("PodDisruptionBudget", "mmft-operator")]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert ("PodDisruptionBudget", "mmft-operator") not in by_identity(template(helm))


def _documented_settings() -> dict[str, str]:
    """settings keys in values.yaml -> the comment lines just above each."""
    lines = (CHART / "values.yaml").read_text().split("\n")
    start = lines.index("settings:")
    documented, comment = {}, []
    for line in lines[start + 1:]:
        if line.startswith("  # "):
            comment.append(line[4:])
        elif match := re.match(r"^  (\w+): null$", line):
            documented[match.group(1)] = " ".join(comment)
            comment = []
        elif line.strip():
            break
    return documented


def test_every_operator_setting_is_a_documented_value_with_its_default():
    documented = _documented_settings()
    fields = {field.name: field for field in dataclasses.fields(OperatorSettings)}
    assert set(documented) == set(fields) - CHART_MANAGED_SETTINGS
    defaults = OperatorSettings()
    for name, comment in documented.items():
        default = json.dumps(getattr(defaults, name))
        assert f"(default: {default}" in comment, f"settings.{name}: the comment must state (default: {default})"


def test_settings_reach_the_operator_as_its_environment(helm):
    objects = by_identity(template(helm, "--set", "settings.unschedulable_grace_seconds=60",
                                   "--set", "settings.bucket_volume=hostPath:/var/buckets",
                                   "--set", "watchNamespaces={team-a,team-b}", "--set", "logFormat=full"))
    container = objects[("Deployment", "mmft-operator")]["spec"]["template"]["spec"]["containers"][0]
    environment = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    settings = OperatorSettings.from_environment(environment)
    assert settings.unschedulable_grace_seconds == 60
    assert settings.bucket_host_dir == "/var/buckets"
    assert all(name.startswith(ENV_PREFIX) for name in environment)
    assert container["args"] == ["operator", "--namespace=team-a", "--namespace=team-b",
                                 "--liveness=http://0.0.0.0:8080/healthz", "--log-format=full"]


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("metrics.serviceMonitor.enabled", "deploy/monitoring/servicemonitor.yaml"),
        ("metrics.prometheusRule.enabled", "deploy/monitoring/prometheusrule.yaml"),
        ("metrics.podMonitoring.enabled", "deploy/monitoring/gke/podmonitoring.yaml"),
        ("metrics.gkeRules.enabled", "deploy/monitoring/gke/rules.yaml"),
    ],
)
def test_monitoring_values_render_the_deploy_monitoring_objects(helm, value, source):
    expected = yaml.safe_load((ROOT / source).read_text())
    rendered = by_identity(template(helm, "--set", f"{value}=true"))
    got = rendered[(expected["kind"], expected["metadata"]["name"])]
    assert got["spec"] == expected["spec"]
    assert got["metadata"]["namespace"] == "mmft-system"
    assert (expected["kind"], expected["metadata"]["name"]) not in by_identity(template(helm))


def test_chart_version_is_the_projects():
    declared = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == declared and chart["appVersion"] == declared
