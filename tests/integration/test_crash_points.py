"""Invariant 1: no duplicate or orphan children, ever. SIGKILL the operator between any two of its API writes and
the end state equals the uninterrupted run's.

The operator talks to the API server through a CrashPointProxy with its own ServiceAccount token, so the audit log
names it. An uninterrupted run of one FineTuneJob teaches the test the number of writes W (never hard-coded: the
engine's write order is free to change). Then for every cut point N in 0..W-1 a fresh namespace runs the same
FineTuneJob with the proxy forwarding its first N writes and holding write N+1 (and any later one) unanswered; the
operator is SIGKILLed while it waits on that write, restarted, and the namespace's end state is compared with the
uninterrupted run's. Cut points run side by side in batches, one namespace each, under one operator process: the
operator reconciles a resource in one pass at a time, so each namespace's writes form one sequence and holding
it at N+1 is exactly "killed between write N and write N+1" for that resource. (A write that reached the server
but whose answer was lost leaves the server as the cut after it does: the dead operator never reads the answer.)

The API server's audit log is the second witness: no DELETE by the operator anywhere, one successful create per
child in each namespace, and as many operator writes as the proxy forwarded (a held write never got through).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, audit_mutations, token_kubeconfig, wait_for, workload_service_account
from crash_point_proxy import CrashPointProxy
from mmft_operator.naming import SPEC_HASH_ANNOTATION

pytestmark = pytest.mark.simulated_pods

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"
NAME = "crash"
CHILD_KINDS = ",".join(
    (
        "configmaps",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "persistentvolumeclaims",
        "deployments.apps",
        "services",
        "jobs.batch",
    )
)
# Made by the control plane in every namespace, not by the operator.
NOT_CHILDREN = {("ConfigMap", "kube-root-ca.crt")}
# A blocked write holds one of the operator's 16 handler threads: leave most of them free for the other namespaces.
BATCH_SIZE = 8
# A run may make fewer writes than the uninterrupted one (a phase it never observed): its cut point is run again.
ATTEMPTS_PER_CUT = 3
# No write for this long after Succeeded and the Job's retention TTL: the run is over. The TTL is the run's last write
# (after the Succeeded status and its Event); a run taken as over without it left that cut point unreached under load.
QUIET_SECONDS = 3.0


def _finetunejob(namespace: str) -> dict:
    document = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    document["metadata"] = {"name": NAME, "namespace": namespace}
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    return document


def _namespace_documents(namespace: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        workload_service_account(namespace),
    ]


def _apply(kubectl, documents: list[dict]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))


@dataclass(frozen=True)
class EndState:
    children: Counter  # (kind, name) -> how many objects
    not_controlled: tuple[str, ...]  # children without exactly one controller reference, to the FineTuneJob's UID
    jobs: int
    job_pods: int
    replica_sets: int
    status: dict  # what must equal the uninterrupted run's

    def differences(self, expected: EndState) -> list[str]:
        found = []
        if self.children != expected.children:
            found.append(f"children {dict(self.children)} != {dict(expected.children)}")
        if self.not_controlled:
            found.append(f"not controlled by the FineTuneJob: {list(self.not_controlled)}")
        for what in ("jobs", "job_pods", "replica_sets", "status"):
            if getattr(self, what) != getattr(expected, what):
                found.append(f"{what} {getattr(self, what)!r} != {getattr(expected, what)!r}")
        return found


def _end_state(kubectl, namespace: str) -> EndState:
    ftj = json.loads(kubectl("get", "ftj", NAME, "-n", namespace, "-o", "json").stdout)
    uid, status = ftj["metadata"]["uid"], ftj.get("status", {})
    objects = json.loads(kubectl("get", CHILD_KINDS, "-n", namespace, "-o", "json").stdout)["items"]
    children, not_controlled, stamps = Counter(), [], {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        if key in NOT_CHILDREN:
            continue
        children[key] += 1
        stamps[f"{key[0]}/{key[1]}"] = obj["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION, "")
        controllers = [ref for ref in obj["metadata"].get("ownerReferences", []) if ref.get("controller")]
        if [ref["uid"] for ref in controllers] != [uid]:
            not_controlled.append(f"{key[0]}/{key[1]}")
    pods = json.loads(kubectl("get", "pods,replicasets", "-n", namespace, "-o", "json").stdout)["items"]
    owner_kinds = Counter(
        ref["kind"] for pod in pods if pod["kind"] == "Pod" for ref in pod["metadata"].get("ownerReferences", [])
    )
    return EndState(
        children=children,
        not_controlled=tuple(not_controlled),
        jobs=sum(1 for kind, _ in children.elements() if kind == "Job"),
        job_pods=owner_kinds["Job"],
        replica_sets=sum(1 for obj in pods if obj["kind"] == "ReplicaSet"),
        status={
            "phase": status.get("phase"),
            "children": status.get("children"),
            "childrenHash": "of the children present"
            if status.get("childrenHash") == _children_hash(stamps, status.get("children") or [])
            else f"{status.get('childrenHash')}, not that of the children present",
            "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])),
        },
    )


def _children_hash(stamps: dict[str, str], children: list[str]) -> str:
    """status.childrenHash as the engine defines it: over the children's spec-hash stamps, in status.children order.
    The stamps cover each child's namespace and owner UID, so the hash differs between namespaces; what must hold
    in each is that it is the hash of the children that exist there."""
    joined = "".join(stamps.get(child, "<missing>") for child in children)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _phases(kubectl, namespaces: list[str]) -> dict[str, str | None]:
    """Each namespace's FineTuneJob phase, in one list call."""
    items = json.loads(kubectl("get", "ftj", "-A", "-o", "json").stdout)["items"]
    found = {item["metadata"]["namespace"]: item.get("status", {}).get("phase") for item in items}
    return {namespace: found.get(namespace) for namespace in namespaces}


def _retained(kubectl, namespaces: list[str]) -> dict[str, bool]:
    """Whether each namespace's Job carries the retention TTL the operator sets once the outcome is recorded."""
    items = json.loads(kubectl("get", "jobs", "-A", "-o", "json").stdout)["items"]
    found = {item["metadata"]["namespace"]: "ttlSecondsAfterFinished" in item["spec"] for item in items}
    return {namespace: found.get(namespace, False) for namespace in namespaces}


@dataclass
class CutRun:
    cut: int
    namespace: str
    held: str | None = None  # the write the operator was killed waiting on; None: its run never got that far
    converge_seconds: float = 0.0


def _audit_by_namespace(audit: Path, since: dt.datetime, namespaces: set[str]) -> dict[str, list[dict]]:
    """The operator's mutating audit events per namespace since `since`."""
    found: dict[str, list[dict]] = {namespace: [] for namespace in namespaces}
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != OPERATOR_USER:
            continue
        namespace = event.get("objectRef", {}).get("namespace")
        received = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if namespace in found and received >= since and event["verb"] in ("create", "update", "patch", "delete"):
            found[namespace].append(event)
    return found


class CrashRig:
    """The operator behind a CrashPointProxy, restartable, and the namespaces the test made."""

    def __init__(self, kubectl, cluster: Path, tmp_path: Path) -> None:
        self.kubectl = kubectl
        self.tmp_path = tmp_path
        self.proxy = CrashPointProxy(token_kubeconfig(kubectl, cluster, tmp_path / "operator.kubeconfig")).start()
        self.proxy_kubeconfig = self.proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
        self.operators: list[OperatorProcess] = []
        self.namespaces: list[str] = []
        self.start_operator()

    def start_operator(self) -> None:
        log = self.tmp_path / f"operator-{len(self.operators)}.log"
        extra_env = {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0"}
        self.operators.append(OperatorProcess(self.proxy_kubeconfig, log, extra_env).start())

    def make_namespaces(self, namespaces: list[str]) -> None:
        self.namespaces += namespaces
        _apply(self.kubectl, [doc for namespace in namespaces for doc in _namespace_documents(namespace)])

    def settled(self, namespaces: list[str]) -> bool:
        phases, retained = _phases(self.kubectl, namespaces), _retained(self.kubectl, namespaces)
        return all(
            phases[ns] == "Succeeded" and retained[ns] and self.proxy.quiet_for(ns) >= QUIET_SECONDS
            for ns in namespaces
        )

    def run_batch(self, batch: list[CutRun]) -> None:
        """Each namespace's FineTuneJob up to its cut point, one SIGKILL for all, a restart, convergence."""
        self.make_namespaces([run.namespace for run in batch])
        for run in batch:
            self.proxy.cut_after(run.namespace, run.cut)
        _apply(self.kubectl, [_finetunejob(run.namespace) for run in batch])
        wait_for(
            lambda: all(self.proxy.first_held(run.namespace) or self.settled([run.namespace]) for run in batch),
            timeout=120,
            what="every namespace of the batch to reach its cut point",
        )
        self.operators[-1].kill()
        killed = time.monotonic()
        for run in batch:
            held = self.proxy.first_held(run.namespace)
            run.held = f"{held.method} {held.resource}" if held else None
            self.proxy.release(run.namespace)
        self.start_operator()
        for run in batch:
            wait_for(
                lambda namespace=run.namespace: self.settled([namespace]),
                timeout=120,
                what=f"convergence after the kill at write {run.cut + 1}",
            )
            run.converge_seconds = time.monotonic() - killed

    def close(self) -> None:
        self.operators[-1].stop()
        self.proxy.stop()
        for namespace in self.namespaces:
            self.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _assert_audit_agrees(audit: Path, since: dt.datetime, proxy: CrashPointProxy, namespaces: set[str], children: int):
    """The API server's own record: no deletes, one successful create per child, and the held writes never
    reached it (its count of the operator's writes equals what the proxy forwarded)."""
    for namespace, events in _audit_by_namespace(audit, since, namespaces).items():
        deletes = [e["requestURI"] for e in events if e["verb"] == "delete"]
        assert not deletes, f"{namespace}: the operator deleted {deletes}"
        created = Counter(
            (e["objectRef"]["resource"], e["objectRef"].get("name"))
            for e in events
            if e["verb"] == "create" and e["responseStatus"]["code"] == 201 and e["objectRef"]["resource"] != "events"
        )
        assert set(created.values()) == {1} and len(created) == children, f"{namespace}: children created {created}"
        forwarded = proxy.writes(namespace)
        assert len(events) == len(forwarded), (
            f"{namespace}: the API server saw {len(events)} writes, the proxy forwarded {len(forwarded)}: "
            "a held write reached the server"
        )


def test_sigkill_between_any_two_writes_ends_as_the_uninterrupted_run(kubectl, cluster, installed, tmp_path: Path):
    audit = cluster.parent / "audit.log"
    if not audit.exists():
        pytest.skip(f"no audit log next to {cluster} (a cluster not started by mmft_localcluster)")
    started_at = dt.datetime.now(dt.UTC)
    test_started = time.monotonic()
    prefix = f"cut-{uuid.uuid4().hex[:6]}"
    rig = CrashRig(kubectl, cluster, tmp_path)
    try:
        baseline_ns = f"{prefix}-uninterrupted"
        rig.make_namespaces([baseline_ns])
        _apply(kubectl, [_finetunejob(baseline_ns)])
        wait_for(lambda: rig.settled([baseline_ns]), timeout=120, what="the uninterrupted run")
        baseline_writes = rig.proxy.writes(baseline_ns)
        total_writes = len(baseline_writes)
        expected = _end_state(kubectl, baseline_ns)
        assert total_writes > 0 and expected.status["phase"] == "Succeeded"
        assert expected.status["childrenHash"] == "of the children present", (
            f"the uninterrupted run's {expected.status['childrenHash']}: has the engine's childrenHash changed?"
        )
        assert set(expected.children.values()) == {1}, expected.children
        print(f"\nuninterrupted run: W={total_writes} writes in {time.monotonic() - test_started:.1f} s")
        for index, write in enumerate(baseline_writes, 1):
            print(f"  write {index:2d}: {write}")

        runs: dict[int, list[CutRun]] = {cut: [] for cut in range(total_writes)}
        for attempt in range(1, ATTEMPTS_PER_CUT + 1):
            pending = [cut for cut, tries in runs.items() if not any(run.held for run in tries)]
            for start in range(0, len(pending), BATCH_SIZE):
                batch = [CutRun(cut, f"{prefix}-n{cut}-a{attempt}") for cut in pending[start : start + BATCH_SIZE]]
                batch_started = time.monotonic()
                rig.run_batch(batch)
                for run in batch:
                    runs[run.cut].append(run)
                print(
                    f"batch {[run.cut for run in batch]} (attempt {attempt}): {time.monotonic() - batch_started:.1f} s"
                )

        uncovered = [cut for cut, tries in runs.items() if not any(run.held for run in tries)]
        assert not uncovered, f"cut points never reached in {ATTEMPTS_PER_CUT} attempts (fewer writes): {uncovered}"
        differences = {}
        for cut, tries in runs.items():
            for run in tries:
                found = _end_state(kubectl, run.namespace).differences(expected)
                if found:
                    differences[f"killed before write {cut + 1} ({run.held})"] = found
        assert not differences, json.dumps(differences, indent=1, default=str)
        namespaces = {run.namespace for tries in runs.values() for run in tries} | {baseline_ns}
        _assert_audit_agrees(audit, started_at, rig.proxy, namespaces, sum(expected.children.values()))
        deletes = [call for call in audit_mutations(audit, started_at, OPERATOR_USER) if call.startswith("delete")]
        assert deletes == [], f"the operator deleted, anywhere in the cluster: {deletes}"
    finally:
        rig.close()

    print(f"cut points covered: {len(runs)} of W={total_writes}; total {time.monotonic() - test_started:.1f} s")
    for cut, tries in runs.items():
        for run in tries:
            outcome = f"killed waiting on {run.held}" if run.held else "not reached"
            print(f"  N={cut:2d}: {outcome}; converged {run.converge_seconds:.1f} s after the kill")
