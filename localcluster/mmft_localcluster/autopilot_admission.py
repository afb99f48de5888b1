"""A simulation of GKE Autopilot's admission of pods, made of the API server's own admission policies.

GKE enforces its resource rules with webhooks of its own (GKE Warden) that cannot run here. The local cluster loads
the same rules, from the one table mmft_operator.autopilot_rules, as a MutatingAdmissionPolicy (raise a container's
request below the row's minimum, bring the pod into the row's CPU:memory ratio, set limits equal to requests) and a
ValidatingAdmissionPolicy (refuse a pod whose total request, the Cloud Storage FUSE sidecar's included, is above the
row's maximum, or whose GPU count Autopilot does not offer), both bound to every namespace but kube-system.
docs/autopilot-admission.md lists the rules and what the simulation leaves out.
"""

from __future__ import annotations

import json

from mmft_operator.autopilot_rules import (
    ACCELERATOR_NODE_LABEL,
    GCSFUSE_SIDECAR_DEFAULT_REQUESTS,
    GCSFUSE_VOLUMES_ANNOTATION,
    GENERAL_PURPOSE_RULE,
    GPU_CONSTRAINT,
    POD_LIMIT_CONSTRAINT,
    RESOURCES,
    RULES,
    WARDEN_PREFIX,
)

MUTATING_POLICY = "simulated-autopilot-resource-requests"
VALIDATING_POLICY = "simulated-autopilot-resource-limits"
GPU_RESOURCE = "nvidia.com/gpu"
# The mutation patches containers by index; pods with more containers keep the rest as they are.
MUTATED_CONTAINERS = 4
_VARIABLE = {"cpu": "Cpu", "memory": "Memory", "ephemeral-storage": "Ephemeral"}
_GIB = 1024.0**3


def _cel(value: str) -> str:
    return json.dumps(value)


def _quantity_map(which: str) -> str:
    """A CEL map from rule key to the row's minimum or maximum of each resource, as floats (cores, bytes)."""
    def row(values: dict[str, str]) -> str:
        return ", ".join(f"{_cel(r)}: quantity({_cel(values[r])}).asApproximateFloat()" for r in RESOURCES)

    return "{" + ", ".join(f"{_cel(rule.key)}: {{{row(getattr(rule, which))}}}" for rule in RULES) + "}"


def _shared_variables() -> list[dict[str, str]]:
    annotations = "object.metadata.annotations"
    sidecar = [
        {
            "name": "sidecar",
            # GKE's webhook injects the gke-gcsfuse-sidecar container into pods with this annotation.
            "expression": f"has(object.metadata.annotations) && {_cel(GCSFUSE_VOLUMES_ANNOTATION)} in {annotations} "
            f"&& {annotations}[{_cel(GCSFUSE_VOLUMES_ANNOTATION)}] == 'true'",
        }
    ]
    for resource in RESOURCES:
        request, limit = f"gke-gcsfuse/{resource}-request", f"gke-gcsfuse/{resource}-limit"
        size = (
            f"{_cel(request)} in {annotations} ? {annotations}[{_cel(request)}] : "
            f"({_cel(limit)} in {annotations} ? {annotations}[{_cel(limit)}] : "
            f"{_cel(GCSFUSE_SIDECAR_DEFAULT_REQUESTS[resource])})"
        )
        sidecar.append(
            {
                "name": f"sidecar{_VARIABLE[resource]}",
                "expression": f"variables.sidecar ? quantity({size}).asApproximateFloat() : 0.0",
            }
        )
    return [
        {
            "name": "gpus",
            "expression": "[0] + object.spec.containers.map(c, has(c.resources) && has(c.resources.limits) && "
            f"{_cel(GPU_RESOURCE)} in c.resources.limits ? "
            f"quantity(c.resources.limits[{_cel(GPU_RESOURCE)}]).asInteger() : 0)",
        },
        {"name": "gpuCount", "expression": "variables.gpus.sum()"},
        {
            "name": "accelerator",
            "expression": f"has(object.spec.nodeSelector) && {_cel(ACCELERATOR_NODE_LABEL)} in object.spec.nodeSelector"
            f" ? object.spec.nodeSelector[{_cel(ACCELERATOR_NODE_LABEL)}] : ''",
        },
        {
            "name": "rule",
            "expression": "variables.gpuCount == 0 ? 'general-purpose' : "
            "variables.accelerator + '/' + string(variables.gpuCount)",
        },
        {"name": "known", "expression": f"variables.rule in {json.dumps([rule.key for rule in RULES])}"},
        {
            "name": "workload",
            "expression": "has(object.metadata.name) && object.metadata.name != '' ? object.metadata.name : "
            "(has(object.metadata.generateName) ? object.metadata.generateName : '')",
        },
        *sidecar,
    ]


def _request(container: str, resource: str) -> str:
    """A container's request of a resource as a float, -1.0 where it asks none."""
    return (
        f"has({container}.resources) && has({container}.resources.requests) && {_cel(resource)} in "
        f"{container}.resources.requests ? quantity({container}.resources.requests[{_cel(resource)}])"
        ".asApproximateFloat() : -1.0"
    )


def _format(resource: str, value: str) -> str:
    # Rounded up: millicores for CPU, bytes for memory and storage.
    if resource == "cpu":
        return f"string(int({value} * 1000.0 + 0.999)) + 'm'"
    return f"string(int({value} + 0.999))"


def _mutation_variables() -> list[dict[str, str]]:
    variables = [
        {"name": "minimum", "expression": f"variables.known ? {_quantity_map('minimum')}[variables.rule] : {{}}"},
        {
            "name": "ratio",
            "expression": "{"
            + ", ".join(
                f"{_cel(rule.key)}: [{rule.memory_per_cpu[0]}, {rule.memory_per_cpu[1]}]"
                for rule in RULES
                if rule.memory_per_cpu
            )
            + "}",
        },
    ]
    for index in range(MUTATED_CONTAINERS):
        container = f"object.spec.containers[{index}]"
        for resource in RESOURCES:
            name = f"{_VARIABLE[resource].lower()}{index}"
            present = f"object.spec.containers.size() > {index}"
            variables.append({"name": name, "expression": f"{present} ? ({_request(container, resource)}) : -1.0"})
            # Raised to the row's minimum (a request it does not make stays absent).
            variables.append(
                {
                    "name": f"{name}Raised",
                    "expression": f"variables.{name} < 0.0 || !variables.known ? variables.{name} : "
                    f"(variables.{name} < variables.minimum[{_cel(resource)}] ? variables.minimum[{_cel(resource)}] "
                    f": variables.{name})",
                },
            )
    for resource in ("cpu", "memory"):
        label = _VARIABLE[resource]
        raised = " + ".join(
            f"(variables.{label.lower()}{index}Raised > 0.0 ? variables.{label.lower()}{index}Raised : 0.0)"
            for index in range(MUTATED_CONTAINERS)
        )
        variables.append({"name": f"total{label}", "expression": f"{raised} + variables.sidecar{label}"})
    in_ratio = "variables.rule in variables.ratio && variables.totalCpu > 0.0 && variables.totalMemory > 0.0"
    variables += [
        {
            # Memory below the ratio's floor: the first container asks the missing bytes.
            "name": "memoryShortfall",
            "expression": f"{in_ratio} && variables.totalMemory < variables.ratio[variables.rule][0] * "
            f"variables.totalCpu * {_GIB} ? variables.ratio[variables.rule][0] * variables.totalCpu * {_GIB} - "
            "variables.totalMemory : 0.0",
        },
        {
            # Memory above the ratio's ceiling: the first container asks the missing CPU.
            "name": "cpuShortfall",
            "expression": f"{in_ratio} && variables.totalMemory > variables.ratio[variables.rule][1] * "
            f"variables.totalCpu * {_GIB} ? variables.totalMemory / ({_GIB} * variables.ratio[variables.rule][1]) - "
            "variables.totalCpu : 0.0",
        },
    ]
    for index in range(MUTATED_CONTAINERS):
        for resource in RESOURCES:
            name = f"{_VARIABLE[resource].lower()}{index}"
            shortfall = {"cpu": "variables.cpuShortfall", "memory": "variables.memoryShortfall"}.get(resource)
            final = f"variables.{name}Raised" + (f" + {shortfall}" if shortfall and index == 0 else "")
            variables.append({"name": f"{name}Final", "expression": f"variables.{name} < 0.0 ? -1.0 : {final}"})
    return variables


def _container_patches(index: int) -> str:
    """JSON patches of one container: its raised requests, then limits equal to the requests it had none for."""
    container = f"object.spec.containers[{index}]"
    path = f"'/spec/containers/{index}/resources"
    has_limits = f"has({container}.resources) && has({container}.resources.limits)"
    names = {resource: f"{_VARIABLE[resource].lower()}{index}" for resource in RESOURCES}
    # The request each resource ends with: as asked, or raised to the rule's minimum.
    values = {
        resource: f"(variables.{name}Final == variables.{name} ? {container}.resources.requests[{_cel(resource)}] : "
        f"{_format(resource, f'variables.{name}Final')})"
        for resource, name in names.items()
    }
    patches = [
        f"(variables.{name} >= 0.0 && variables.{name}Final != variables.{name} ? "
        f"[JSONPatch{{op: 'replace', path: {path}/requests/{resource}', value: {values[resource]}}}] : [])"
        for resource, name in names.items()
    ]
    any_request = " || ".join(f"variables.{name} >= 0.0" for name in names.values())
    patches.append(
        f"(({any_request}) && !({has_limits}) ? [JSONPatch{{op: 'add', path: {path}/limits', value: {{}}}}] : [])"
    )
    for resource, name in names.items():
        value = values[resource]
        patches.append(
            f"(variables.{name} >= 0.0 && !({has_limits} && {_cel(resource)} in {container}.resources.limits) ? "
            f"[JSONPatch{{op: 'add', path: {path}/limits/{resource}', value: {value}}}] : [])"
        )
    return f"object.spec.containers.size() > {index} ? " + " + ".join(patches) + " : []"


_MATCH = {
    "resourceRules": [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ],
    "namespaceSelector": {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]
    },
}
# DaemonSet pods have rules of their own on Autopilot, outside this simulation.
_MATCH_CONDITIONS = [
    {
        "name": "not-a-daemonset-pod",
        "expression": "!has(object.metadata.ownerReferences) || "
        "!object.metadata.ownerReferences.exists(r, r.kind == 'DaemonSet')",
    }
]


def mutating_policy() -> list[dict]:
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": MUTATING_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": _MATCH,
            "matchConditions": _MATCH_CONDITIONS,
            "variables": _shared_variables() + _mutation_variables(),
            "mutations": [
                {"patchType": "JSONPatch", "jsonPatch": {"expression": _container_patches(index)}}
                for index in range(MUTATED_CONTAINERS)
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": MUTATING_POLICY},
        "spec": {"policyName": MUTATING_POLICY},
    }
    return [policy, binding]


def _total(resource: str) -> str:
    request = (
        f"has(c.resources) && has(c.resources.requests) && {_cel(resource)} in c.resources.requests ? "
        f"quantity(c.resources.requests[{_cel(resource)}]).asApproximateFloat() : 0.0"
    )
    sidecars = (
        "(has(object.spec.initContainers) ? object.spec.initContainers.filter(c, has(c.restartPolicy) && "
        f"c.restartPolicy == 'Always').map(c, {request}) : [])"
    )
    containers = f"object.spec.containers.map(c, {request})"
    return f"([0.0] + {containers} + {sidecars}).sum() + variables.sidecar{_VARIABLE[resource]}"


def _warden(constraint: str, detail: str) -> str:
    """A CEL string expression: GKE Warden's refusal, with ``detail`` (a CEL string expression) as the violation."""
    prefix = WARDEN_PREFIX + '{"' + constraint + '":["'
    return f"{_cel(prefix)} + {detail} + {_cel(chr(34) + ']} (simulated Autopilot admission, mmft local cluster)')}"


def validating_policy() -> list[dict]:
    maxima = "{" + ", ".join(f"{_cel(rule.key)}: {json.dumps(rule.maximum)}" for rule in RULES) + "}"
    validations = [
        {
            "expression": "variables.gpuCount == 0 || variables.known",
            "messageExpression": _warden(
                GPU_CONSTRAINT,
                "'workload \\'' + variables.workload + '\\' requests ' + string(variables.gpuCount) + ' GPU(s) of "
                "type \\'' + variables.accelerator + '\\', which Autopilot does not offer; the GPU counts it offers: "
                + ", ".join(rule.key for rule in RULES if rule.gpus)
                + ".'",
            ),
            "reason": "Forbidden",
        }
    ]
    for resource in RESOURCES:
        name = {"ephemeral-storage": "ephemeral-storage"}.get(resource, resource)
        validations.append(
            {
                "expression": f"!variables.known || variables.total{_VARIABLE[resource]} <= "
                f"{_quantity_map('maximum')}[variables.rule][{_cel(resource)}]",
                "messageExpression": _warden(
                    POD_LIMIT_CONSTRAINT,
                    f"'Total {name} requested by containers for workload \\'' + variables.workload + "
                    f"'\\' is higher than the Autopilot maximum of \\'' + {maxima}[variables.rule][{_cel(resource)}] "
                    "+ '\\'.'",
                ),
                "reason": "Forbidden",
            }
        )
    variables = _shared_variables() + [
        {"name": f"total{_VARIABLE[resource]}", "expression": _total(resource)} for resource in RESOURCES
    ]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": VALIDATING_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": _MATCH,
            "matchConditions": _MATCH_CONDITIONS,
            "variables": variables,
            "validations": validations,
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": VALIDATING_POLICY},
        "spec": {"policyName": VALIDATING_POLICY, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def manifests() -> list[dict]:
    return mutating_policy() + validating_policy()


def probe_pod(over_maximum: bool = True) -> dict:
    """A pod for a server-side dry run that shows whether the policies act: over the general-purpose maximum of
    CPU (refused), or below its minimum (raised)."""
    cpu = "1000" if over_maximum else "1m"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "autopilot-admission-probe", "namespace": "default"},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "probe", "image": "probe", "resources": {
                    "requests": {"cpu": cpu, "memory": GENERAL_PURPOSE_RULE.minimum["memory"]}}}
            ],
        },
    }


def probe_was_raised(pod: dict) -> bool:
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    return requests["cpu"] == GENERAL_PURPOSE_RULE.minimum["cpu"]
