"""Operator at scale on the local control plane: a burst, a steady stream, then a restart, in one run.

Prints one JSON object. The phases:
  burst     --count FineTuneJobs applied at once by one `kubectl apply --server-side`; burst_seconds runs until every
            one has all its children and status.observedGeneration (seen through one watch, no polling); the
            operator's and each control-plane process's CPU, and the operator's API calls by verb counted at the
            server (audit log), over the same window
  steady    --steady more FineTuneJobs created one at a time at --rate per second; p50/p99/max from each create
            call to its converged status
  restart   the operator is restarted with every resource converged: time until it has reconciled all of them
            (restart_seconds) and its create/update/patch/delete calls from the audit log (restart_mutations; goal 0)
  changes   --changes spec changes (a pod annotation) to converged resources at --change-rate per second;
            p50/p99/max from each patch call to the status showing its generation observed
  memory    the operator's RSS after the burst and with all --count + --steady resources

Then each goal of docs/benchmarks.md (GOALS below, the one copy of them) is judged: the JSON gains `goals` (per goal
the measured value, the limit and whether it was met) and `never_converged` (per phase, the resources that did not
converge before --timeout). The exit status is 1 when a goal is missed or any resource never converged, 0 otherwise.

  python bench/operator_scale.py --count 500 --steady 500    # starts its own local cluster, stops it afterwards
  MMFT_KUBECONFIG=... python bench/operator_scale.py --count 100 --steady 50   # reuses a running one (audit.log)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))

from cluster_helpers import (  # noqa: E402
    OperatorProcess,
    audit_mutations,
    reconciles_done,
    token_kubeconfig,
    workload_service_account,
)
from mmft_localcluster import LocalCluster, kubectl_path  # noqa: E402
from mmft_localcluster.crds import wait_established  # noqa: E402

GROUP, VERSION = "mmft.io", "v1alpha1"

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"

# The goals of docs/benchmarks.md ("The operator at scale"), judged at the end of every run: result key -> (limit,
# "max" or "min"). A key the run did not measure (a phase not run) is not judged. The goals are stated for 500 + 500
# resources; a smaller run is held to the same limits, which it should meet more easily.
GOALS: dict[str, tuple[float, str]] = {
    "burst_seconds": (60.0, "max"),
    "burst_operator_cores": (1.5, "max"),
    "steady_achieved_rate": (10.0, "min"),
    "steady_p99_seconds": (5.0, "max"),
    "changes_p99_seconds": (5.0, "max"),
    "rss_mib_at_all_resources": (250.0, "max"),
    "restart_seconds": (60.0, "max"),
    "restart_mutations": (0, "max"),
}


def kubectl(kubeconfig: Path, *args: str, input: str | None = None) -> str:
    result = subprocess.run(
        [str(kubectl_path()), f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


SAMPLE_FINETUNEJOB = ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml"


def finetunejobs(first: int, count: int, tensorboard: bool = True) -> list[dict]:
    sample = yaml.safe_load(SAMPLE_FINETUNEJOB.read_text())
    documents = []
    for index in range(first, first + count):
        document = json.loads(json.dumps(sample))
        document["metadata"]["name"] = f"burst-{index:04d}"
        document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
        if not tensorboard:
            document["spec"]["tensorboard"] = {"enabled": False}
        documents.append(document)
    return documents


def desired_children(tensorboard: bool) -> int:
    """How many children the operator's own planner wants for the benchmark's FineTuneJob (`mmft render`)."""
    from mmft_operator.render import render_documents

    return len(render_documents(finetunejobs(0, 1, tensorboard), "bench"))


CHILDREN_WANTED = {tensorboard: desired_children(tensorboard) for tensorboard in (True, False)}


def is_converged(item: dict) -> bool:
    status = item.get("status") or {}
    tensorboard = (item["spec"].get("tensorboard") or {}).get("enabled", True)
    return (
        status.get("observedGeneration") == item["metadata"]["generation"]
        and len(status.get("children") or []) == CHILDREN_WANTED[tensorboard]
    )


def judge(result: dict) -> dict[str, dict]:
    """Each goal the run measured: the value, the limit and whether it was met."""
    verdicts = {}
    for key, (limit, bound) in GOALS.items():
        value = result.get(key)
        if value is None:
            continue
        met = value <= limit if bound == "max" else value >= limit
        verdicts[key] = {"value": value, bound: limit, "met": met}
    return verdicts


class ConvergenceWatch:
    """One watch on the namespace's FineTuneJobs (no polling: a list of 1,000 objects a second would load the very
    API server being measured); remembers when each first had all its children and a current observedGeneration."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        from kubernetes import client, config

        self.api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
        self.namespace = namespace
        self.converged_at: dict[str, float] = {}
        # (name, observedGeneration) -> when the status first showed it: how long a spec change took to be handled.
        self.generation_seen_at: dict[tuple[str, int], float] = {}
        self.last_event = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ConvergenceWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, "finetunejobs",
                    timeout_seconds=60,
                ):
                    self.last_event = time.monotonic()
                    item = event["object"]
                    if is_converged(item):
                        self.converged_at.setdefault(item["metadata"]["name"], self.last_event)
                        observed = (item["metadata"]["name"], item["status"]["observedGeneration"])
                        self.generation_seen_at.setdefault(observed, self.last_event)
                    if self._stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - a dropped watch is reopened; the list replays every object
                time.sleep(0.5)

    def wait_converged(self, names: set[str], timeout: float) -> bool:
        return self._wait_until_seen(names, self.converged_at, timeout)

    def wait_generations(self, wanted: set[tuple[str, int]], timeout: float) -> bool:
        return self._wait_until_seen(wanted, self.generation_seen_at, timeout)

    @staticmethod
    def _wait_until_seen(wanted: set, seen: dict, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wanted <= seen.keys():
                return True
            time.sleep(0.2)
        return False

    def wait_quiet(self, quiet_seconds: float, timeout: float) -> float:
        """Wait until no FineTuneJob changed for `quiet_seconds` (the operator caught up); returns the seconds taken."""
        started = time.monotonic()
        while time.monotonic() - started < timeout and time.monotonic() - self.last_event < quiet_seconds:
            time.sleep(0.5)
        return time.monotonic() - started


def percentile(values: list[float], share: float) -> float | None:
    """None when nothing converged: the phase's never_converged count then fails the run, not a latency."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def component_cpu(state_dir: Path) -> dict[str, float]:
    """CPU seconds so far of each control-plane process (their pid files live in the cluster's state folder)."""
    seconds = {}
    for pid_file in sorted((state_dir / "pids").glob("*.pid")):
        try:
            seconds[pid_file.stem] = cpu_seconds(int(pid_file.read_text().split()[0]))
        except (OSError, ValueError):
            continue
    return seconds


def operator_requests(audit: Path, since: dt.datetime, until: dt.datetime, user: str) -> dict[str, int]:
    """The operator's API calls between `since` and `until` by verb, counted at the server (its audit log)."""
    counts: dict[str, int] = {}
    for line in audit.read_text().splitlines():
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete" or event["user"]["username"] != user:
            continue
        received = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if since <= received <= until:
            counts[event["verb"]] = counts.get(event["verb"], 0) + 1
    return counts


def rss_mib(pid: int) -> float:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="FineTuneJobs applied at once")
    parser.add_argument("--steady", type=int, default=500, help="FineTuneJobs created afterwards, one at a time")
    parser.add_argument("--rate", type=float, default=15.0, help="creations per second in the steady phase")
    parser.add_argument("--changes", type=int, default=0,
                        help="spec changes (a pod annotation) to converged FineTuneJobs after the steady phase, "
                             "each to another resource")
    parser.add_argument("--change-rate", type=float, default=15.0, help="spec changes per second")
    parser.add_argument("--tensorboard", choices=("on", "off"), default="on",
                        help="spec.tensorboard.enabled of every FineTuneJob (off: no TensorBoard Deployment and "
                             "Service, and so no ReplicaSet and second pod, per resource)")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    total = args.count + args.steady

    work = Path(tempfile.mkdtemp(prefix="mmft-scale-"))
    reused = os.environ.get("MMFT_KUBECONFIG")
    cluster = None if reused else LocalCluster(work / "cluster")
    kubeconfig = Path(reused) if reused else cluster.up(log=lambda line: print(line, file=sys.stderr))
    try:
        gpu_nodes_needed = max(0, total // 8 - 2)
        if cluster is not None and gpu_nodes_needed:
            # More nodes of the card the sample asks for (the local cluster starts with two of each).
            accelerator = yaml.safe_load(SAMPLE_FINETUNEJOB.read_text())["spec"]["compute"]["accelerator"]
            cluster.add_gpu_nodes(accelerator, gpu_nodes_needed)
        kubectl(kubeconfig, "apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(kubeconfig, "crd", "-l", "app.kubernetes.io/part-of=mmft")
        kubectl(kubeconfig, "apply", "--server-side", "-k", str(ROOT / "deploy/overlays/local"))
        namespace = f"scale-{int(time.time())}"
        kubectl(kubeconfig, "create", "namespace", namespace)
        kubectl(kubeconfig, "create", "-f", "-", input=json.dumps(workload_service_account(namespace)))
        audit = kubeconfig.parent / "audit.log"
        operator_config = token_kubeconfig(
            lambda *a, **k: _Result(kubectl(kubeconfig, *a)), kubeconfig, work / "operator.kubeconfig"
        )
        watch = ConvergenceWatch(kubeconfig, namespace).start()
        result: dict = {"count": args.count, "steady": args.steady, "rate": args.rate, "tensorboard": args.tensorboard,
                        "cores": os.cpu_count()}

        # Burst: every FineTuneJob applied at once by one kubectl.
        operator = OperatorProcess(operator_config, work / "operator.log").start()
        time.sleep(3)
        cpu_before, components_before = cpu_seconds(operator.process.pid), component_cpu(kubeconfig.parent)
        burst_started_at, started = dt.datetime.now(dt.UTC), time.monotonic()
        burst = finetunejobs(0, args.count, args.tensorboard == "on")
        kubectl(kubeconfig, "apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(burst))
        apply_seconds = time.monotonic() - started
        burst_names = {d["metadata"]["name"] for d in burst}
        converged = watch.wait_converged(burst_names, args.timeout)
        burst_seconds = time.monotonic() - started
        burst_ended_at = dt.datetime.now(dt.UTC)
        components_after = component_cpu(kubeconfig.parent)
        result.update(
            burst_converged=converged,
            burst_never_converged=len(burst_names - watch.converged_at.keys()),
            burst_seconds=round(burst_seconds, 1),
            apply_seconds=round(apply_seconds, 1),
            burst_operator_cores=round((cpu_seconds(operator.process.pid) - cpu_before) / burst_seconds, 2),
            burst_control_plane_cores={
                name: round((seconds - components_before.get(name, 0.0)) / burst_seconds, 2)
                for name, seconds in components_after.items()
            },
            burst_operator_requests=operator_requests(audit, burst_started_at, burst_ended_at, OPERATOR_USER),
            burst_rss_mib=round(rss_mib(operator.process.pid), 1),
            settle_seconds=round(watch.wait_quiet(5, args.timeout), 1),
        )

        # Steady: one creation at a time at --rate; latency from each create call to its converged status.
        if args.steady:
            cpu_before, sent_at = cpu_seconds(operator.process.pid), {}
            from kubernetes import client, config

            api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
            steady_started = time.monotonic()
            for index, document in enumerate(finetunejobs(args.count, args.steady, args.tensorboard == "on")):
                time.sleep(max(0.0, steady_started + index / args.rate - time.monotonic()))
                sent_at[document["metadata"]["name"]] = time.monotonic()
                api.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", document)
            watch.wait_converged(set(sent_at), args.timeout)
            done = watch.converged_at
            latencies = [done[name] - sent for name, sent in sent_at.items() if name in done]
            steady_seconds = time.monotonic() - steady_started
            result.update(
                steady_converged=len(latencies),
                steady_never_converged=args.steady - len(latencies),
                steady_achieved_rate=round(args.steady / (max(sent_at.values()) - steady_started), 1),
                steady_p50_seconds=rounded(percentile(latencies, 0.50)),
                steady_p99_seconds=rounded(percentile(latencies, 0.99)),
                steady_max_seconds=rounded(max(latencies, default=None)),
                steady_operator_cores=round((cpu_seconds(operator.process.pid) - cpu_before) / steady_seconds, 2),
                settle_after_steady_seconds=round(watch.wait_quiet(5, args.timeout), 1),
            )
        if args.changes:
            result.update(spec_changes(watch, kubeconfig, namespace, operator, total, args))
        result.update(resources=total, rss_mib_at_all_resources=round(rss_mib(operator.process.pid), 1))
        operator.stop()

        # Restart with everything converged: what the new operator writes is what a restart costs.
        restarted_at = dt.datetime.now(dt.UTC)
        second = OperatorProcess(operator_config, work / "second.log").start()
        restart_started, first_reconcile = time.monotonic(), None
        deadline = restart_started + args.timeout
        while (done := reconciles_done(second.metrics_port)) < total and time.monotonic() < deadline:
            if done and first_reconcile is None:
                first_reconcile = time.monotonic() - restart_started  # before it: start-up and kopf's listing
            time.sleep(0.5)
        restart_seconds = time.monotonic() - restart_started
        restart_never_reconciled = max(0, total - reconciles_done(second.metrics_port))
        time.sleep(3)
        result.update(
            restart_seconds=round(restart_seconds, 1),
            restart_never_reconciled=restart_never_reconciled,
            restart_first_reconcile_seconds=first_reconcile and round(first_reconcile, 1),
            restart_rss_mib=round(rss_mib(second.process.pid), 1),
            restart_mutations=audit_mutations(audit, restarted_at, OPERATOR_USER),
        )
        second.stop()
        watch.stop()
        result["restart_mutations"] = len(result["restart_mutations"])
        result["never_converged"] = {
            phase: result[key]
            for phase, key in (("burst", "burst_never_converged"), ("steady", "steady_never_converged"),
                               ("changes", "changes_never_observed"), ("restart", "restart_never_reconciled"))
            if key in result
        }
        result["goals"] = judge(result)
        print(json.dumps(result, indent=2))
    finally:
        if cluster is not None:
            cluster.down()
    missed = [key for key, verdict in result["goals"].items() if not verdict["met"]]
    if missed or any(result["never_converged"].values()):
        print(f"goals missed: {', '.join(missed) or 'none'}; never converged: {result['never_converged']}",
              file=sys.stderr)
        return 1
    return 0


def spec_changes(watch: ConvergenceWatch, kubeconfig: Path, namespace: str, operator, total: int, args) -> dict:
    """Spec changes at --change-rate to converged resources: latency from each patch call until the status shows
    its generation observed (children re-rendered and compared, status written). The change is a pod annotation,
    one of the fields CEL leaves mutable once a run has started; it starts no pods, unlike a create."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    names = [f"burst-{index:04d}" for index in range(min(args.changes, total))]
    cpu_before, sent_at = cpu_seconds(operator.process.pid), {}
    started_at, started = dt.datetime.now(dt.UTC), time.monotonic()
    for index, name in enumerate(names):
        time.sleep(max(0.0, started + index / args.change_rate - time.monotonic()))
        sent = time.monotonic()
        change = {"spec": {"podMetadata": {"annotations": {"example.com/change": str(index)}}}}
        patched = api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetunejobs", name, change)
        sent_at[(name, patched["metadata"]["generation"])] = sent
    watch.wait_generations(set(sent_at), args.timeout)
    seen = watch.generation_seen_at
    latencies = [seen[key] - sent for key, sent in sent_at.items() if key in seen]
    seconds = time.monotonic() - started
    requests = operator_requests(kubeconfig.parent / "audit.log", started_at, dt.datetime.now(dt.UTC), OPERATOR_USER)
    return {
        "changes_observed": len(latencies),
        "changes_never_observed": len(names) - len(latencies),
        "changes_achieved_rate": round(len(names) / max(1e-9, max(sent_at.values()) - started), 1),
        "changes_p50_seconds": rounded(percentile(latencies, 0.50)),
        "changes_p99_seconds": rounded(percentile(latencies, 0.99)),
        "changes_max_seconds": rounded(max(latencies, default=None)),
        "changes_operator_cores": round((cpu_seconds(operator.process.pid) - cpu_before) / seconds, 2),
        "changes_operator_requests": requests,
    }


class _Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
