"""Status tells why a workload cannot start (issue 19.4), on the local control plane with kwok's simulated pods.

A pod refused at admission (a ValidatingAdmissionPolicy of the test's own, the way Autopilot refuses) shows as
PodRejected with the admission message; a pod whose volume cannot be mounted (a FailedMount Event posted the way the
kubelet posts it, on a pod kwok keeps in ContainerCreating) shows as VolumeMountFailed; both turn Stalled after the
start-failure grace. The TensorBoard Deployment's availability and the ServiceAccount's Workload Identity annotation
show as their own conditions. The operator runs as its own ServiceAccount, so the new watches are checked against
deploy/base/clusterrole.yaml too.

Time limits catch hangs; they do not measure speed (the 30-second promise is measured in docs/troubleshooting.md).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, token_kubeconfig, wait_for

pytestmark = pytest.mark.simulated_pods

SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
WORKLOAD_SA = "mmft-workload"
GRACE_SECONDS = 5
HANG = 120  # seconds: a limit that catches a hang on two loaded cores, not a speed requirement


@pytest.fixture
def operator_as_its_account(cluster, kubectl, installed, tmp_path):
    kubeconfig = token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")
    process = OperatorProcess(
        kubeconfig, tmp_path / "operator.log",
        {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0", "MMFT_START_FAILURE_GRACE_SECONDS": str(GRACE_SECONDS)},
    ).start()
    yield process
    process.stop()


def _get(kubectl, kind: str, name: str, namespace: str) -> dict:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def _apply(kubectl, namespace: str, document: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def _datasetprep(name: str, annotations: dict[str, str] | None = None) -> dict:
    document = yaml.safe_load((SAMPLES / "datasetprep.yaml").read_text())
    document["metadata"]["name"] = name
    if annotations:
        document["spec"]["podMetadata"] = {"annotations": annotations}
    return document


def _finetunejob(name: str, **spec_changes) -> dict:
    document = yaml.safe_load((SAMPLES / "finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["spec"].update(spec_changes)
    return document


def _printed_reason(kubectl, kind: str, name: str, namespace: str) -> str:
    """The Reason column of `kubectl get`, as a user reads it."""
    table = kubectl("get", kind, name, "-n", namespace).stdout.splitlines()
    header, row = table[0].split(), table[1].split()
    return row[header.index("REASON")] if "REASON" in header and len(row) > header.index("REASON") else ""


def test_a_pod_refused_at_admission_is_pod_rejected_with_the_message_then_stalled(
    kubectl, namespace, operator_as_its_account
) -> None:
    kubectl("create", "serviceaccount", WORKLOAD_SA, "-n", namespace)
    refusal = f"simulated refusal for {namespace}: requests exceed what this compute class allows"
    policy = f"refuse-workload-{namespace}"
    documents = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                ]},
                "validations": [{
                    "expression": "!has(object.metadata.labels) || "
                                  "!('mmft.io/owner-kind' in object.metadata.labels)",
                    "message": refusal,
                }],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy, "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
            },
        },
    ]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))
    try:
        # The policy takes effect once the API server has loaded it: a probe pod is refused.
        probe = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"generateName": "probe-", "labels": {"mmft.io/owner-kind": "probe"}},
                 "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
        wait_for(lambda: refusal in kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(probe),
                                            check=False).stderr,
                 timeout=HANG, what="the admission policy to refuse pods")

        _apply(kubectl, namespace, _datasetprep("refused"))
        rejected = wait_for(
            lambda: (dsp := _get(kubectl, "dsp", "refused", namespace)).get("status", {}).get("reason") == "PodRejected"
            and dsp, timeout=HANG, what="reason PodRejected")
        assert refusal in _condition(rejected, "Reconciling")["message"] + _condition(rejected, "Stalled")["message"]
        assert rejected["status"]["phase"] == "Pending"
        assert _printed_reason(kubectl, "dsp", "refused", namespace) == "PodRejected"
        assert kubectl("get", "pods", "-n", namespace, "-l", "mmft.io/owner-name=refused", "-o", "name").stdout == ""

        stalled = wait_for(lambda: _condition(_get(kubectl, "dsp", "refused", namespace), "Stalled").get("status")
                           == "True" and _get(kubectl, "dsp", "refused", namespace), timeout=HANG, what="Stalled")
        assert _condition(stalled, "Stalled")["reason"] == "PodRejected"
        assert refusal in _condition(stalled, "Stalled")["message"]
    finally:
        kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy, check=False)


def _kubelet_event(namespace: str, pod: dict, reason: str, message: str) -> dict:
    """An Event as the kubelet posts it (core/v1, source kubelet on the pod's node), about the pod."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    node = pod["spec"].get("nodeName", "")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod['metadata']['name']}.{reason.lower()}", "namespace": namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": namespace,
                           "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                           "resourceVersion": pod["metadata"]["resourceVersion"]},
        "reason": reason, "message": message, "type": "Warning",
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet", "reportingInstance": node,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }


def test_a_failed_mount_is_volume_mount_failed_with_the_kubelets_message_then_stalled(
    kubectl, namespace, operator_as_its_account
) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)
    # kwok keeps the pod Pending with its container waiting in ContainerCreating, as a pod whose mount fails stays.
    _apply(kubectl, namespace, _datasetprep("unmounted", {"kwok.mmft.io/waiting-reason": "ContainerCreating"}))
    pod = wait_for(lambda: next(iter(json.loads(kubectl(
        "get", "pods", "-n", namespace, "-l", "mmft.io/owner-name=unmounted", "-o", "json").stdout)["items"]), None),
        timeout=HANG, what="the workload pod")
    # Briefly Unschedulable while its /scratch claim (a generic ephemeral volume) is provisioned, then Starting.
    wait_for(lambda: _get(kubectl, "dsp", "unmounted", namespace).get("status", {}).get("reason") == "Starting",
             timeout=HANG, what="reason Starting")

    message = ('MountVolume.SetUp failed for volume "gcs" : rpc error: code = NotFound desc = failed to get GCS '
               'bucket "my-mmft-bucket": googleapi: Error 404: The specified bucket does not exist., notFound')
    kubectl("create", "-f", "-", input=json.dumps(_kubelet_event(namespace, pod, "FailedMount", message)))
    failed = wait_for(
        lambda: (dsp := _get(kubectl, "dsp", "unmounted", namespace)).get("status", {}).get("reason")
        == "VolumeMountFailed" and dsp, timeout=HANG, what="reason VolumeMountFailed")
    assert message in _condition(failed, "Reconciling")["message"] + _condition(failed, "Stalled")["message"]
    assert _printed_reason(kubectl, "dsp", "unmounted", namespace) == "VolumeMountFailed"
    stalled = wait_for(lambda: _condition(_get(kubectl, "dsp", "unmounted", namespace), "Stalled").get("status")
                       == "True" and _get(kubectl, "dsp", "unmounted", namespace), timeout=HANG, what="Stalled")
    assert _condition(stalled, "Stalled")["reason"] == "VolumeMountFailed"


def test_tensorboard_availability_is_its_own_condition_and_absent_when_disabled(
    kubectl, namespace, operator_as_its_account
) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)
    # The trainer runs long enough for TensorBoard's pod to become ready meanwhile.
    pod_metadata = {"annotations": {"kwok.mmft.io/run-seconds": "600"}}
    _apply(kubectl, namespace, _finetunejob("with-board", podMetadata=pod_metadata))
    _apply(kubectl, namespace, _finetunejob("without-board", podMetadata=pod_metadata,
                                            tensorboard={"enabled": False}))
    available = wait_for(
        lambda: _condition(_get(kubectl, "ftj", "with-board", namespace), "TensorBoardAvailable").get("status")
        == "True" and _condition(_get(kubectl, "ftj", "with-board", namespace), "TensorBoardAvailable"),
        timeout=HANG, what="TensorBoardAvailable True")
    deployment = _get(kubectl, "deployment", "with-board-tensorboard", namespace)
    own = next(c for c in deployment["status"]["conditions"] if c["type"] == "Available")
    assert (available["reason"], available["message"]) == (own["reason"], own["message"])

    wait_for(lambda: _get(kubectl, "ftj", "without-board", namespace).get("status", {}).get("phase") == "Running",
             timeout=HANG, what="the FineTuneJob without TensorBoard running")
    assert _condition(_get(kubectl, "ftj", "without-board", namespace), "TensorBoardAvailable") == {}


def test_a_service_account_without_workload_identity_warns_before_any_pod_and_clears_when_annotated(
    kubectl, namespace, operator_as_its_account
) -> None:
    kubectl("create", "serviceaccount", WORKLOAD_SA, "-n", namespace)
    # Waiting for a DatasetPrep that does not exist: no Job, no pod, yet the warning shows.
    waiting = _finetunejob("needs-identity")
    waiting["spec"]["dataset"] = {"datasetPrepRef": {"name": "not-there"}}
    _apply(kubectl, namespace, waiting)
    warning = wait_for(
        lambda: _condition(_get(kubectl, "ftj", "needs-identity", namespace), "WorkloadIdentity"),
        timeout=HANG, what="the WorkloadIdentity condition")
    assert (warning["status"], warning["reason"]) == ("False", "WorkloadIdentityMissing")
    assert "iam.gke.io/gcp-service-account" in warning["message"] and WORKLOAD_SA in warning["message"]
    ftj = _get(kubectl, "ftj", "needs-identity", namespace)
    assert ftj["status"]["reason"] == "DatasetNotFound"  # a warning: it blocks nothing and replaces no reason
    assert kubectl("get", "jobs,pods", "-n", namespace, "-o", "name").stdout == ""

    google_account = "trainer@my-project.iam.gserviceaccount.com"
    kubectl("annotate", "serviceaccount", WORKLOAD_SA, "-n", namespace,
            f"iam.gke.io/gcp-service-account={google_account}")
    linked = wait_for(
        lambda: (c := _condition(_get(kubectl, "ftj", "needs-identity", namespace), "WorkloadIdentity"))
        .get("status") == "True" and c, timeout=HANG, what="WorkloadIdentity True after annotating")
    assert linked["reason"] == "GcpServiceAccountLinked" and google_account in linked["message"]
