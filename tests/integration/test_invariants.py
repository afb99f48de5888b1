"""Operator invariants checked at the API server (its audit log), not by the operator's own account."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml
from cluster_helpers import (
    ROOT,
    OperatorProcess,
    audit_mutations,
    create_workload_service_account,
    reconciles_done,
    token_kubeconfig,
    wait_for,
)

pytestmark = pytest.mark.simulated_pods

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"


def _audit_log(cluster: Path) -> Path:
    audit = cluster.parent / "audit.log"
    if not audit.exists():
        pytest.skip(f"no audit log next to {cluster} (a cluster not started by mmft_localcluster)")
    return audit


def _finetunejob(name: str) -> str:
    document = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    return yaml.safe_dump(document)


def test_a_restarted_operator_with_converged_resources_makes_no_mutating_call(
    kubectl, cluster, installed, namespace, tmp_path: Path
) -> None:
    audit = _audit_log(cluster)
    create_workload_service_account(kubectl, namespace)
    kubeconfig = token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")
    first = OperatorProcess(kubeconfig, tmp_path / "first.log").start()
    try:
        for index in range(5):
            kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob(f"steady-{index}"))
        for index in range(5):
            kubectl("wait", f"ftj/steady-{index}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    finally:
        first.stop()
    restarted_at = dt.datetime.now(dt.UTC)
    second = OperatorProcess(kubeconfig, tmp_path / "second.log").start()
    try:
        # The restarted operator lists and reconciles every resource: wait until it has, by its own metrics.
        wait_for(lambda: reconciles_done(second.metrics_port) >= 5, timeout=60, what="a reconcile of each FineTuneJob")
        time.sleep(3)
    finally:
        second.stop()
    assert audit_mutations(audit, restarted_at, OPERATOR_USER, namespace) == [], second.log()[-2000:]


def test_observed_generation_catches_up_with_spec_changes(kubectl, namespace, operator) -> None:
    kubectl("apply", "-n", namespace, "-f", str(ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml"))

    def observed() -> tuple[int, int]:
        ftj = json.loads(kubectl("get", "ftj", "gemma3-melanoma", "-n", namespace, "-o", "json").stdout)
        return ftj["metadata"]["generation"], ftj.get("status", {}).get("observedGeneration", 0)

    wait_for(lambda: observed()[1] == 1, what="observedGeneration 1")
    # Waiting for its DatasetPrep, the run has not started: the spec may still change.
    kubectl(
        "patch",
        "ftj",
        "gemma3-melanoma",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"training":{"learningRate":0.0001}}}',
    )
    generation, seen = wait_for(
        lambda: (pair := observed())[0] == pair[1] == 2 and pair, timeout=30, what="observedGeneration 2"
    )
    assert (generation, seen) == (2, 2)


def test_deletion_completes_with_children_while_the_operator_is_down(
    kubectl, cluster, crds, namespace, tmp_path: Path
) -> None:
    create_workload_service_account(kubectl, namespace)
    running = OperatorProcess(cluster, tmp_path / "first.log").start()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("orphan-check"))
        kubectl("wait", "ftj/orphan-check", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    finally:
        running.stop()
    # No finalizer of ours: the deletion completes without the operator, and garbage collection takes the children.
    kubectl("delete", "ftj", "orphan-check", "-n", namespace, "--timeout=30s")
    wait_for(
        lambda: (
            kubectl(
                "get",
                "jobs,configmaps,pvc,deployments,services,roles,rolebindings",
                "-n",
                namespace,
                "-l",
                "mmft.io/owner-name=orphan-check",
                "-o",
                "name",
            ).stdout.strip()
            == ""
        ),
        timeout=60,
        what="the children collected",
    )
    restarted = OperatorProcess(cluster, tmp_path / "second.log").start()
    try:
        time.sleep(5)
        leftovers = kubectl(
            "get", "jobs,configmaps", "-n", namespace, "-l", "mmft.io/owner-name=orphan-check", "-o", "name"
        ).stdout.strip()
        assert leftovers == "", f"the restarted operator recreated children of a deleted resource: {leftovers}"
    finally:
        restarted.stop()


def test_two_replicas_never_both_act_and_the_standby_takes_over(
    kubectl, cluster, crds, namespace, tmp_path: Path
) -> None:
    create_workload_service_account(kubectl, namespace)
    election = {"MMFT_LEASE_NAMESPACE": namespace, "MMFT_LEASE_DURATION_SECONDS": "6"}
    first = OperatorProcess(cluster, tmp_path / "first.log", election).start()
    wait_for(lambda: "leader:" in first.log(), timeout=30, what="the first replica to lead")
    second = OperatorProcess(cluster, tmp_path / "second.log", election).start()
    try:
        wait_for(lambda: "standby" in second.log(), timeout=30, what="the second replica to wait")
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("led-0"))
        kubectl("wait", "ftj/led-0", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
        assert "leader:" not in second.log(), "the standby must not lead while the leader renews"
        assert reconciles_done(second.metrics_port) == 0, "the standby reconciled while another replica led"

        first.kill()  # SIGKILL: no release, the standby waits for the lease to expire
        killed = time.monotonic()
        wait_for(lambda: "leader:" in second.log(), timeout=60, what="the standby to take over")
        failover_seconds = time.monotonic() - killed
        kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob("led-1"))
        kubectl("wait", "ftj/led-1", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    finally:
        first.stop()
        second.stop()
    print(f"fail-over after SIGKILL of the leader: {failover_seconds:.1f} s (lease 6 s)")
    assert failover_seconds < 6 * 3
    lease = json.loads(kubectl("get", "lease", "mmft-operator", "-n", namespace, "-o", "json").stdout)
    assert lease["spec"].get("leaseTransitions", 0) >= 1


def test_every_resource_converges_when_30_percent_of_writes_fail(
    kubectl, cluster, crds, namespace, tmp_path: Path
) -> None:
    from fault_proxy import FaultProxy

    create_workload_service_account(kubectl, namespace)
    proxy = FaultProxy(cluster, fault_rate=0.3).start()
    operator = OperatorProcess(proxy.kubeconfig(tmp_path / "proxy.kubeconfig"), tmp_path / "operator.log").start()
    try:
        for index in range(8):
            kubectl("apply", "-n", namespace, "-f", "-", input=_finetunejob(f"faulty-{index}"))
        for index in range(8):
            kubectl("wait", f"ftj/faulty-{index}", "-n", namespace, "--for=condition=Succeeded", "--timeout=240s")
        assert operator.process.poll() is None, "the operator must survive the faults"
    finally:
        operator.stop()
        proxy.stop()
    print(f"fault proxy: {proxy.injected} writes failed, {proxy.forwarded_writes} forwarded")
    assert proxy.injected >= 5, "the proxy must actually have failed writes"
    jobs = kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(jobs) == sorted(f"job.batch/faulty-{index}-train" for index in range(8)), "no duplicate Jobs"
