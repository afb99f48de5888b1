"""Under a real Kueue the operator creates a queued Job suspended and never flips `spec.suspend` afterwards.

Kueue v0.17's manager (localcluster/build-kueue.sh) runs against the local control plane without its admission
webhooks (docs/kueue.md). The Job's suspend history comes from a watch started before the FineTuneJob exists (so
its first event is the Job as the operator created it); who changed it comes from the API server's audit log.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cluster_helpers import (
    ROOT,
    OperatorProcess,
    create_workload_service_account,
    reconciles_done,
    token_kubeconfig,
    wait_for,
)
from mmft_localcluster.kueue import USER as KUEUE_USER

pytestmark = pytest.mark.simulated_pods

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"
ACCELERATOR = "nvidia-tesla-a100"
# Longer than anything the operator does on its own in response to an event; its periodic resync (300 s, not
# configurable) is not waited for, a restart of the operator reconciles every resource the same way instead.
HOLD_SECONDS = 15


@pytest.fixture
def queued_namespace(kubectl, namespace, kueue):
    create_workload_service_account(kubectl, namespace)
    yield namespace
    # While Kueue still runs: it holds finalizers on Workloads, ClusterQueues and ResourceFlavors in use, and
    # releases them only once the Jobs are gone.
    kubectl("delete", "ftj", "--all", "-n", namespace, "--timeout=60s")
    wait_for(lambda: _workload(kubectl, namespace) is None, timeout=60, what="the Workloads to be deleted")
    for kind in ("clusterqueue", "resourceflavor"):
        kubectl("delete", kind, namespace, "--ignore-not-found", "--timeout=60s")


@pytest.fixture
def operator_as_itself(kubectl, cluster, installed, tmp_path: Path):
    """The operator with its ServiceAccount's token, so that the audit log names it."""
    kubeconfig = token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")
    process = OperatorProcess(kubeconfig, tmp_path / "operator.log", {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0"})
    yield process.start()
    process.stop()


class JobWatch:
    """`kubectl get jobs --watch` from before the Job exists: every version of it, in order."""

    def __init__(self, kubectl_executable: str, kubeconfig: Path, namespace: str, output: Path):
        self.output = output
        self.process = subprocess.Popen(
            [kubectl_executable, f"--kubeconfig={kubeconfig}", "get", "jobs", "-n", namespace, "--watch",
             "--output-watch-events", "-o", "json"],
            stdout=output.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def suspend_history(self) -> list[bool]:
        """spec.suspend of each version, consecutive repeats collapsed."""
        history: list[bool] = []
        for event in self._events():
            value = bool(event["object"]["spec"].get("suspend"))
            if not history or history[-1] != value:
                history.append(value)
        return history

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def _events(self) -> list[dict]:
        text, decoder, events, position = self.output.read_text(), json.JSONDecoder(), [], 0
        while (position := _skip_space(text, position)) < len(text):
            try:
                event, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                break  # the last event is still being written
            events.append(event)
        return events


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


@pytest.fixture
def job_watch(cluster, queued_namespace, tmp_path: Path):
    from mmft_localcluster import kubectl_path

    watch = JobWatch(str(kubectl_path()), cluster, queued_namespace, tmp_path / "job-watch.json")
    time.sleep(1)  # the watch is established before anything creates a Job
    yield watch
    watch.stop()


def _queues(name: str, namespace: str, gpus: int, stop_policy: str = "None") -> str:
    """A ResourceFlavor for the simulated A100 nodes, a ClusterQueue with `gpus` GPUs of it, a LocalQueue."""
    quota = {"cpu": "96", "memory": "680Gi", "ephemeral-storage": "1Ti", "nvidia.com/gpu": str(gpus)}
    documents = [
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": name},
            "spec": {"nodeLabels": {"cloud.google.com/gke-accelerator": ACCELERATOR}},
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "stopPolicy": stop_policy,
                "resourceGroups": [
                    {
                        "coveredResources": list(quota),
                        "flavors": [
                            {
                                "name": name,
                                "resources": [{"name": key, "nominalQuota": value} for key, value in quota.items()],
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "training", "namespace": namespace},
            "spec": {"clusterQueue": name},
        },
    ]
    return yaml.safe_dump_all(documents)


def _finetunejob(name: str, run_seconds: int = 1) -> str:
    document = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["spec"]["queueName"] = "training"
    document["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": str(run_seconds)}}
    return yaml.safe_dump(document)


def _get(kubectl, namespace: str, *what: str) -> dict:
    return json.loads(kubectl("get", *what, "-n", namespace, "-o", "json").stdout)


def _workload(kubectl, namespace: str) -> dict | None:
    items = _get(kubectl, namespace, "workloads.kueue.x-k8s.io")["items"]
    return items[0] if items else None


def _condition(obj: dict | None, kind: str) -> dict:
    conditions = (obj or {}).get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def _job_writes(audit: Path, since: dt.datetime, user: str, namespace: str) -> list[str]:
    """Every write of `user` to the Jobs of `namespace` since `since`, from the API server's audit log."""
    writes = []
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != user:
            continue
        path = event["requestURI"].split("?")[0]
        received = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        on_jobs = path.startswith(f"/apis/batch/v1/namespaces/{namespace}/jobs")
        if received >= since and on_jobs and event["verb"] in ("create", "update", "patch", "delete"):
            writes.append(f"{event['verb']} {path}")
    return writes


def _assert_the_operator_only_created_the_job(audit: Path, since: dt.datetime, namespace: str) -> None:
    assert _job_writes(audit, since, OPERATOR_USER, namespace) == [f"create /apis/batch/v1/namespaces/{namespace}/jobs"]


def _hold_and_poke(kubectl, namespace: str, name: str, operator: OperatorProcess) -> OperatorProcess:
    """HOLD_SECONDS during which the operator reconciles the FineTuneJob on an event of its own and again after a
    restart (which reconciles every resource, like a resync). Returns the restarted operator."""
    held_since = time.monotonic()
    before = reconciles_done(operator.metrics_port)
    kubectl("annotate", "ftj", name, "-n", namespace, "--overwrite", f"test.mmft.io/poked={time.time()}")
    wait_for(lambda: reconciles_done(operator.metrics_port) > before, timeout=60, what="a reconcile after the poke")
    time.sleep(max(0.0, HOLD_SECONDS - (time.monotonic() - held_since)))
    operator.stop()
    operator.start()
    wait_for(lambda: reconciles_done(operator.metrics_port) >= 1, timeout=90, what="the restarted operator's reconcile")
    time.sleep(3)
    return operator


def test_kueue_admits_the_job_the_operator_created_suspended_and_the_run_succeeds(
    kubectl, cluster, kueue, queued_namespace, job_watch, operator_as_itself
) -> None:
    namespace, name = queued_namespace, "admitted"
    audit = cluster.parent / "audit.log"
    since = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input=_queues(namespace, namespace, gpus=8))
    kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob(name))

    kubectl("wait", f"ftj/{name}", "-n", namespace, "--for=condition=Succeeded", "--timeout=180s")
    workload = _workload(kubectl, namespace)
    job = _get(kubectl, namespace, "job", f"{name}-train")

    assert _condition(workload, "Admitted").get("status") == "True", workload
    assert workload["spec"]["queueName"] == "training"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "training"
    # Created suspended (the first version the watch saw), unsuspended once, by Kueue.
    assert job_watch.suspend_history() == [True, False]
    kueue_writes = _job_writes(audit, since, KUEUE_USER, namespace)
    job_path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}-train"
    assert {f"patch {job_path}", f"update {job_path}"} & set(kueue_writes), f"Kueue never wrote the Job: {kueue_writes}"
    # Besides creating it, the operator sets the finished Job's retention once (README, "Retention by outcome").
    wait_for(lambda: _get(kubectl, namespace, "job", f"{name}-train")["spec"].get("ttlSecondsAfterFinished"),
             timeout=60, what="the finished Job's ttlSecondsAfterFinished")
    assert _job_writes(audit, since, OPERATOR_USER, namespace) == [
        f"create /apis/batch/v1/namespaces/{namespace}/jobs", f"patch {job_path}",
    ]


def test_without_quota_the_job_stays_suspended_and_the_finetunejob_reports_it_queued(
    kubectl, cluster, kueue, queued_namespace, job_watch, operator_as_itself
) -> None:
    namespace, name = queued_namespace, "unadmitted"
    audit = cluster.parent / "audit.log"
    since = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input=_queues(namespace, namespace, gpus=0))
    kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob(name))

    def pending_workload() -> dict | None:
        workload = _workload(kubectl, namespace)
        return workload if _condition(workload, "QuotaReserved").get("reason") == "Pending" else None

    workload = wait_for(pending_workload, timeout=120, what="Kueue to find no quota for the Workload")
    wait_for(
        lambda: _get(kubectl, namespace, "ftj", name).get("status", {}).get("reason") == "QueuedByKueue",
        timeout=60,
        what="the FineTuneJob to report QueuedByKueue",
    )
    operator = _hold_and_poke(kubectl, namespace, name, operator_as_itself)

    ftj = _get(kubectl, namespace, "ftj", name)
    job = _get(kubectl, namespace, "job", f"{name}-train")
    workload = _workload(kubectl, namespace)
    assert job["spec"]["suspend"] is True
    assert _condition(workload, "Admitted").get("status") != "True"
    assert "insufficient" in _condition(workload, "QuotaReserved").get("message", "").lower(), workload
    assert (ftj["status"]["phase"], ftj["status"]["reason"]) == ("Suspended", "QueuedByKueue"), operator.log()[-2000:]
    assert _condition(ftj, "Succeeded").get("status") == "False"
    assert job_watch.suspend_history() == [True]
    _assert_the_operator_only_created_the_job(audit, since, namespace)


def test_a_job_kueue_evicts_stays_suspended(
    kubectl, cluster, kueue, queued_namespace, job_watch, operator_as_itself
) -> None:
    namespace, name = queued_namespace, "evicted"
    audit = cluster.parent / "audit.log"
    since = dt.datetime.now(dt.UTC)
    kubectl("apply", "-f", "-", input=_queues(namespace, namespace, gpus=8))
    kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob(name, run_seconds=600))
    wait_for(
        lambda: _get(kubectl, namespace, "ftj", name).get("status", {}).get("phase") == "Running",
        timeout=120,
        what="the admitted run to be Running",
    )

    kubectl("patch", "clusterqueue", namespace, "--type=merge", "-p", '{"spec":{"stopPolicy":"HoldAndDrain"}}')
    evicted = wait_for(
        lambda: (w := _workload(kubectl, namespace)) and _condition(w, "Evicted").get("status") == "True" and w,
        timeout=120,
        what="Kueue to evict the Workload",
    )
    wait_for(
        lambda: _get(kubectl, namespace, "ftj", name).get("status", {}).get("reason") == "QueuedByKueue",
        timeout=60,
        what="the FineTuneJob to report QueuedByKueue again",
    )
    operator = _hold_and_poke(kubectl, namespace, name, operator_as_itself)

    job = _get(kubectl, namespace, "job", f"{name}-train")
    ftj = _get(kubectl, namespace, "ftj", name)
    assert _condition(evicted, "Evicted")["reason"] == "ClusterQueueStopped", evicted
    assert job["spec"]["suspend"] is True
    assert ftj["status"]["reason"] == "QueuedByKueue", operator.log()[-2000:]
    assert job_watch.suspend_history() == [True, False, True]
    _assert_the_operator_only_created_the_job(audit, since, namespace)
