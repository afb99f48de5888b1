"""Invariant 6: nothing is deleted or recreated on a stale read; UIDs and resourceVersion preconditions decide.

The operator runs with its own ServiceAccount token, so the API server's audit log names every call it makes.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, token_kubeconfig, wait_for
from fault_proxy import ApiProxy, ProxiedRequest, Reply

pytestmark = pytest.mark.simulated_pods

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"
HOLD_FINALIZER = "test.mmft.io/hold"
MUTATING_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def _audit_log(cluster: Path) -> Path:
    audit = cluster.parent / "audit.log"
    if not audit.exists():
        pytest.skip(f"no audit log next to {cluster} (a cluster not started by mmft_localcluster)")
    return audit


def _operator_writes(audit: Path, namespace: str, since: dt.datetime) -> list[dict]:
    """The operator's mutating audit events in `namespace` since `since`, in the order the server received them."""
    events = []
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if (
            event.get("stage") == "ResponseComplete"
            and event["user"]["username"] == OPERATOR_USER
            and event.get("objectRef", {}).get("namespace") == namespace
            and event["verb"] in MUTATING_VERBS
            and _received(event) >= since
        ):
            events.append(event)
    return sorted(events, key=_received)


def _received(event: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))


def _finetunejob(name: str, **spec_changes) -> str:
    document = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["spec"].update(spec_changes)
    return yaml.safe_dump(document)


def _get(kubectl, kind: str, name: str, namespace: str) -> dict:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _controllers(obj: dict) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences", []) if ref.get("controller")]


def _owned_by(kubectl, namespace: str, uid: str) -> list[str]:
    kinds = "configmaps,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,pvc,deployments,services"
    kinds += ",jobs"
    items = json.loads(kubectl("get", kinds, "-n", namespace, "-o", "json").stdout)["items"]
    return [f"{item['kind']}/{item['metadata']['name']}" for item in items if uid in _controllers(item)]


def test_a_recreated_finetunejob_never_touches_the_old_job_and_creates_its_own_once_it_is_gone(
    kubectl, cluster, installed, namespace, tmp_path: Path
) -> None:
    audit = _audit_log(cluster)
    started = dt.datetime.now(dt.UTC)
    create_workload_service_account(kubectl, namespace)
    kubeconfig = token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log").start()
    job_name = "recreated-train"
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("recreated"))
        kubectl("wait", "ftj/recreated", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
        old_uid = _get(kubectl, "ftj", "recreated", namespace)["metadata"]["uid"]
        old_job = _get(kubectl, "job", job_name, namespace)
        finalizers = [*old_job["metadata"].get("finalizers", []), HOLD_FINALIZER]
        kubectl(
            "patch",
            "job",
            job_name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"finalizers": finalizers}}),
        )

        # Owner gone, garbage collection pending: the new object meets the old children.
        recreated_at = dt.datetime.now(dt.UTC)
        kubectl("delete", "ftj", "recreated", "-n", namespace, "--wait=true")
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("recreated"))
        new_uid = _get(kubectl, "ftj", "recreated", namespace)["metadata"]["uid"]
        assert new_uid != old_uid
        # The claim outlives its owner while the old Job's pod uses it (pvc-protection): remove the pod so that
        # the Job alone is left, the child the new object must neither adopt, patch nor delete.
        kubectl("delete", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name={job_name}", "--wait=true")
        wait_for(
            lambda: _owned_by(kubectl, namespace, old_uid) == [f"Job/{job_name}"],
            timeout=30,
            what="garbage collection to take every old child but the held Job",
        )
        held = _get(kubectl, "job", job_name, namespace)
        assert held["metadata"]["deletionTimestamp"] and held["metadata"]["uid"] == old_job["metadata"]["uid"]
        # A user touching the object: a reconcile that meets only the held Job, whatever raced before.
        kubectl("annotate", "ftj", "recreated", "-n", namespace, "test.mmft.io/touched=1")
        conflict = wait_for(
            lambda: (
                (c := _condition(_get(kubectl, "ftj", "recreated", namespace), "Stalled")).get("reason")
                == "ChildConflict"
                and job_name in c.get("message", "")
                and c
            ),
            timeout=30,
            what="the conflict with the old Job reported as Stalled/ChildConflict",
        )
        assert conflict["status"] == "True"
        ftj = _get(kubectl, "ftj", "recreated", namespace)
        assert (ftj["status"]["phase"], ftj["status"]["reason"]) == ("Pending", "ChildConflict")
        now = _get(kubectl, "job", job_name, namespace)
        assert _controllers(now) == [old_uid], "the old Job was adopted"
        assert now["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"], "the old Job was written"
        released_at = dt.datetime.now(dt.UTC)
        kubectl("patch", "job", job_name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        wait_for(lambda: not _owned_by(kubectl, namespace, old_uid), timeout=60, what="the old children gone")
        gone = time.monotonic()
        kubectl("wait", "ftj/recreated", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
        print(f"own Job created and Succeeded {time.monotonic() - gone:.1f} s after the old children were gone")
    finally:
        operator.stop()

    new_job = _get(kubectl, "job", job_name, namespace)
    assert new_job["metadata"]["uid"] != old_job["metadata"]["uid"]
    assert _controllers(new_job) == [new_uid]
    writes = _operator_writes(audit, namespace, started)
    assert [e["requestURI"] for e in writes if e["verb"] in ("delete", "deletecollection")] == []
    touching_the_old_job = [
        f"{e['verb']} {e['requestURI']} -> {e['responseStatus']['code']}"
        for e in writes
        if recreated_at <= _received(e) < released_at
        and e["objectRef"].get("resource") == "jobs"
        and e["verb"] != "create"
    ]
    assert touching_the_old_job == [], "the operator wrote to the old Job"
    job_creates = [e for e in writes if e["objectRef"].get("resource") == "jobs" and e["responseStatus"]["code"] == 201]
    assert len(job_creates) == 2, "one Job for each FineTuneJob, the second only after the old one was gone"
    assert _received(job_creates[1]) >= released_at


class StaleReplayProxy(ApiProxy):
    """Answers the next GET of one object with a copy read earlier, in the server's place; records the writes."""

    def __init__(self, upstream_kubeconfig: Path) -> None:
        super().__init__(upstream_kubeconfig)
        self.stale: dict[str, dict] = {}
        self.writes: list[tuple[str, str, int]] = []

    def serve_once(self, resource_path: str, body: dict) -> None:
        with self.lock:
            self.stale[resource_path] = body

    def intercept(self, request: ProxiedRequest) -> Reply | None:
        if request.method != "GET":
            return None
        with self.lock:
            body = self.stale.pop(urlsplit(request.path).path, None)
        return Reply(200, body) if body is not None else None

    def forwarded(self, request: ProxiedRequest, status: int) -> None:
        if request.mutating:
            with self.lock:
                self.writes.append((request.method, urlsplit(request.path).path, status))


def test_a_child_patch_from_a_stale_read_is_refused_and_the_operator_converges_on_a_fresh_one(
    kubectl, cluster, installed, namespace, tmp_path: Path
) -> None:
    audit = _audit_log(cluster)
    started = dt.datetime.now(dt.UTC)
    create_workload_service_account(kubectl, namespace)
    proxy = StaleReplayProxy(token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")).start()
    operator = OperatorProcess(proxy.kubeconfig(tmp_path / "proxy.kubeconfig"), tmp_path / "operator.log").start()
    service = "stale-tensorboard"
    service_path = f"/api/v1/namespaces/{namespace}/services/{service}"
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("stale"))
        kubectl("wait", "ftj/stale", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
        snapshot = _get(kubectl, "service", service, namespace)
        # Someone else writes after the snapshot: from now on it is a stale read.
        kubectl("annotate", "service", service, "-n", namespace, "test.mmft.io/touched=1")
        proxy.serve_once(service_path, snapshot)

        # One of the few fields that may change after the run started; it changes the Service (a patched child).
        changed = _finetunejob("stale", tensorboard={"enabled": True, "serviceType": "NodePort"})
        kubectl("apply", "-n", namespace, "-f", "-", input=changed)
        wait_for(
            lambda: _get(kubectl, "service", service, namespace)["spec"]["type"] == "NodePort",
            timeout=60,
            what="the TensorBoard Service patched to NodePort",
        )
        wait_for(
            lambda: (ftj := _get(kubectl, "ftj", "stale", namespace))["status"].get("observedGeneration") == 2 and ftj,
            timeout=30,
            what="observedGeneration 2",
        )
    finally:
        operator.stop()
        proxy.stop()

    assert proxy.stale == {}, "the operator never read the ConfigMap again: nothing was replayed"
    patches = [status for method, path, status in proxy.writes if method == "PATCH" and path == service_path]
    assert patches == [409, 200], f"the patch built on the stale copy must be refused, then one fresh patch: {patches}"
    current = _get(kubectl, "service", service, namespace)
    assert current["metadata"]["uid"] == snapshot["metadata"]["uid"], "the Service was recreated"
    assert current["metadata"]["annotations"].get("test.mmft.io/touched") == "1", "the other writer's change was lost"
    ftj = _get(kubectl, "ftj", "stale", namespace)
    assert ftj["status"]["phase"] == "Succeeded"
    assert _condition(ftj, "Stalled")["status"] == "False"
    writes = _operator_writes(audit, namespace, started)
    assert [e["requestURI"] for e in writes if e["verb"] in ("delete", "deletecollection")] == []
    refused = [e for e in writes if e["objectRef"].get("name") == service and e["verb"] == "patch"]
    assert [e["responseStatus"]["code"] for e in refused] == [409, 200], "the API server's record agrees"
