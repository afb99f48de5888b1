"""The local cluster's simulation of GKE Autopilot's admission (docs/autopilot-admission.md), rule by rule: pods
that break a rule are created through the real API server and come back refused in GKE Warden's words, or raised.

Each row of mmft_operator.autopilot_rules gets its maximum tested (at the maximum: admitted; above: refused), so a
row added to the table is tested without a test added here.
"""

from __future__ import annotations

import json
import re

import pytest
from mmft_operator.autopilot_rules import (
    ACCELERATOR_NODE_LABEL,
    GENERAL_PURPOSE_RULE,
    GPU_CONSTRAINT,
    POD_LIMIT_CONSTRAINT,
    RESOURCES,
    RULES,
    WARDEN_PREFIX,
)

pytestmark = [pytest.mark.simulated_pods, pytest.mark.both_minors]
# One unit above a maximum: a millicore of CPU, a mebibyte of memory or storage.
ONE_UNIT_MORE = {"cpu": "1m", "memory": "1Mi", "ephemeral-storage": "1Mi"}
SIDECAR = {"gke-gcsfuse/volumes": "true"}


def _pod(requests: dict[str, str], rule=GENERAL_PURPOSE_RULE, annotations: dict | None = None,
         limits: dict | None = None) -> dict:
    resources: dict = {"requests": dict(requests)}
    if rule.gpus:
        resources["limits"] = {"nvidia.com/gpu": str(rule.gpus)}
    if limits:
        resources.setdefault("limits", {}).update(limits)
    spec: dict = {"containers": [{"name": "main", "image": "busybox", "resources": resources}]}
    if rule.accelerator:
        spec["nodeSelector"] = {ACCELERATOR_NODE_LABEL: rule.accelerator}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "rule-", "annotations": annotations or {}},
            "spec": spec}


def _create(kubectl, namespace: str, pod: dict):
    # A server-side dry run: the API server admits or refuses as for a real create, and stores nothing.
    return kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod),
                   check=False)


def _plus(quantity: str, resource: str) -> str:
    """quantity plus one unit, written as kubectl would accept it."""
    if resource == "cpu":
        return f"{int(float(quantity) * 1000) + 1}m"
    return f"{int(quantity.removesuffix('Gi')) * 1024 + 1}Mi"


@pytest.mark.parametrize("rule", RULES, ids=[rule.key for rule in RULES])
def test_a_pod_at_the_rows_maximum_is_admitted(kubectl, namespace, rule):
    result = _create(kubectl, namespace, _pod(rule.maximum, rule))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("rule", RULES, ids=[rule.key for rule in RULES])
def test_a_pod_over_the_rows_maximum_is_refused_in_wardens_words(kubectl, namespace, rule, resource):
    requests = {**rule.maximum, resource: _plus(rule.maximum[resource], resource)}
    result = _create(kubectl, namespace, _pod(requests, rule))
    assert result.returncode != 0
    assert WARDEN_PREFIX in result.stderr and POD_LIMIT_CONSTRAINT in result.stderr, result.stderr
    assert re.search(f"Total {resource} requested by containers for workload 'rule-[a-z0-9]+' is higher than the "
                     f"Autopilot maximum of '{rule.maximum[resource]}'\\.", result.stderr), result.stderr


def test_the_fuse_sidecars_requests_count_in_the_pods_total(kubectl, namespace):
    cpu_max = int(GENERAL_PURPOSE_RULE.maximum["cpu"])
    requests = {"cpu": str(cpu_max - 1), "memory": "32Gi"}
    assert _create(kubectl, namespace, _pod(requests)).returncode == 0
    sized = {**SIDECAR, "gke-gcsfuse/cpu-request": "2", "gke-gcsfuse/cpu-limit": "2"}
    refused = _create(kubectl, namespace, _pod(requests, annotations=sized))
    assert refused.returncode != 0 and f"maximum of '{cpu_max}'" in refused.stderr, refused.stderr
    # Only the limit annotation: the request is the limit.
    refused = _create(kubectl, namespace, _pod(requests, annotations={**SIDECAR, "gke-gcsfuse/cpu-limit": "2"}))
    assert refused.returncode != 0 and "Total cpu" in refused.stderr, refused.stderr


def test_a_sidecar_without_sizes_counts_the_drivers_default(kubectl, namespace):
    # 10Gi in all on a general-purpose pod; the sidecar's default is 5Gi.
    assert _create(kubectl, namespace, _pod({"cpu": "1", "memory": "2Gi", "ephemeral-storage": "5Gi"},
                                           annotations=SIDECAR)).returncode == 0
    refused = _create(kubectl, namespace, _pod({"cpu": "1", "memory": "2Gi", "ephemeral-storage": "6Gi"},
                                               annotations=SIDECAR))
    assert refused.returncode != 0 and "Total ephemeral-storage" in refused.stderr, refused.stderr


def test_a_gpu_count_autopilot_does_not_offer_is_refused(kubectl, namespace):
    rule = next(rule for rule in RULES if rule.gpus == 8)
    offered = {r.gpus for r in RULES if r.accelerator == rule.accelerator}
    unoffered = next(count for count in (1, 2, 4, 3) if count not in offered)
    pod = _pod({"cpu": "1", "memory": "4Gi"}, rule)
    pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = str(unoffered)
    refused = _create(kubectl, namespace, pod)
    assert refused.returncode != 0 and GPU_CONSTRAINT in refused.stderr, refused.stderr
    assert f"requests {unoffered} GPU(s) of type '{rule.accelerator}'" in refused.stderr


def _admitted(kubectl, namespace, pod) -> dict:
    result = _create(kubectl, namespace, pod)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["spec"]["containers"][0]["resources"]


@pytest.mark.parametrize("rule", [GENERAL_PURPOSE_RULE, next(rule for rule in RULES if rule.gpus)],
                         ids=lambda rule: rule.key)
def test_requests_below_the_minimum_are_raised_and_limits_set_to_requests(kubectl, namespace, rule):
    # Memory at a quarter of the minimum CPU's GiB keeps the general-purpose ratio out of the picture.
    resources = _admitted(kubectl, namespace, _pod({"cpu": "1m", "memory": "1Mi", "ephemeral-storage": "1Mi"}, rule))
    assert _millicores(resources["requests"]["cpu"]) == _millicores(rule.minimum["cpu"])
    for resource in ("memory", "ephemeral-storage"):
        assert _bytes(resources["requests"][resource]) >= _bytes(rule.minimum[resource])
    for resource in RESOURCES:
        assert resources["limits"][resource] == resources["requests"][resource]


def test_requests_at_or_above_the_minimum_are_kept_and_limits_set_equal(kubectl, namespace):
    resources = _admitted(kubectl, namespace, _pod({"cpu": "2", "memory": "4Gi", "ephemeral-storage": "1Gi"}))
    assert resources["requests"] == {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "1Gi"}
    assert resources["limits"] == resources["requests"]


def test_a_limit_already_set_is_kept(kubectl, namespace):
    resources = _admitted(kubectl, namespace, _pod({"cpu": "1", "memory": "4Gi"}, limits={"cpu": "2"}))
    assert resources["limits"] == {"cpu": "2", "memory": "4Gi"}


def test_memory_above_the_ratio_raises_cpu(kubectl, namespace):
    _, high = GENERAL_PURPOSE_RULE.memory_per_cpu
    resources = _admitted(kubectl, namespace, _pod({"cpu": "1", "memory": "13Gi"}))
    # 13 GiB need 13 / 6.5 = 2 vCPUs.
    assert _millicores(resources["requests"]["cpu"]) == int(13 / high * 1000)
    assert resources["requests"]["memory"] == "13Gi"


def test_memory_below_the_ratio_is_raised(kubectl, namespace):
    low, _ = GENERAL_PURPOSE_RULE.memory_per_cpu
    resources = _admitted(kubectl, namespace, _pod({"cpu": "4", "memory": "1Gi"}))
    assert _bytes(resources["requests"]["memory"]) == int(4 * low * 1024**3)
    assert resources["requests"]["cpu"] == "4"


def test_gpu_pods_have_no_ratio(kubectl, namespace):
    rule = next(rule for rule in RULES if rule.gpus)
    resources = _admitted(kubectl, namespace, _pod({"cpu": "1", "memory": "20Gi"}, rule))
    assert resources["requests"]["cpu"] == "1" and resources["requests"]["memory"] == "20Gi"


def test_kube_system_pods_are_outside_the_simulation(kubectl):
    result = _create(kubectl, "kube-system", _pod({"cpu": "1000"}))
    assert result.returncode == 0, result.stderr


def _millicores(quantity: str) -> int:
    return int(quantity.removesuffix("m")) if quantity.endswith("m") else int(float(quantity) * 1000)


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(quantity)
