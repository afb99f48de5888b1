"""Operator at scale on the local control plane: a burst of FineTuneJobs, then a restart.

Prints one JSON object:
  burst_seconds         apply of N FineTuneJobs -> every one has all its children and status.observedGeneration
  operator_cpu_cores    operator CPU seconds / wall seconds during the burst
  operator_rss_mib      operator resident memory after the burst
  restart_seconds       operator start -> it has reconciled every resource again
  restart_mutations     create/update/patch/delete calls the restarted operator made (from the API server's audit
                        log, not the operator's own count); goal 0

  python bench/operator_scale.py --count 500               # starts its own local cluster and stops it afterwards
  MMFT_KUBECONFIG=... python bench/operator_scale.py --count 100   # reuses a running one (needs its audit.log)
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
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))

from cluster_helpers import OperatorProcess, audit_mutations, reconciles_done, token_kubeconfig  # noqa: E402
from mmft_localcluster import LocalCluster, kubectl_path  # noqa: E402

OPERATOR_USER = "system:serviceaccount:mmft-system:mmft-operator"
CHILDREN_PER_JOB = 8  # axolotl ConfigMap, report ConfigMap, Role, RoleBinding, PVC, TensorBoard Deployment+Service, Job


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


def finetunejobs(count: int) -> str:
    sample = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    documents = []
    for index in range(count):
        document = json.loads(json.dumps(sample))
        document["metadata"]["name"] = f"burst-{index:04d}"
        document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
        documents.append(document)
    return yaml.safe_dump_all(documents)


def converged(kubeconfig: Path, namespace: str, count: int) -> int:
    items = json.loads(kubectl(kubeconfig, "get", "ftj", "-n", namespace, "-o", "json"))["items"]
    return sum(
        1
        for item in items
        if item.get("status", {}).get("observedGeneration") == item["metadata"]["generation"]
        and len(item["status"].get("children", [])) == CHILDREN_PER_JOB
    )


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
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mmft-scale-"))
    reused = os.environ.get("MMFT_KUBECONFIG")
    cluster = None if reused else LocalCluster(work / "cluster")
    kubeconfig = Path(reused) if reused else cluster.up(log=lambda line: print(line, file=sys.stderr))
    try:
        gpu_nodes_needed = max(0, args.count // 8 - 2)
        if cluster is not None and gpu_nodes_needed:
            cluster.add_gpu_nodes("nvidia-tesla-a100", gpu_nodes_needed)
        kubectl(kubeconfig, "apply", "--server-side", "-k", str(ROOT / "crds"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=mmft")
        kubectl(kubeconfig, "apply", "--server-side", "-k", str(ROOT / "deploy/overlays/local"))
        namespace = f"scale-{int(time.time())}"
        kubectl(kubeconfig, "create", "namespace", namespace)
        kubectl(kubeconfig, "create", "serviceaccount", "mmft-workload", "-n", namespace)
        audit = kubeconfig.parent / "audit.log"
        operator_config = token_kubeconfig(
            lambda *a, **k: _Result(kubectl(kubeconfig, *a)), kubeconfig, work / "operator.kubeconfig"
        )

        operator = OperatorProcess(operator_config, work / "operator.log").start()
        time.sleep(3)
        cpu_before = cpu_seconds(operator.process.pid)
        components_before = component_cpu(kubeconfig.parent)
        burst_started_at = dt.datetime.now(dt.UTC)
        started = time.monotonic()
        kubectl(kubeconfig, "apply", "--server-side", "-n", namespace, "-f", "-", input=finetunejobs(args.count))
        apply_seconds = time.monotonic() - started
        done = 0
        while done < args.count and time.monotonic() - started < args.timeout:
            time.sleep(1)
            done = converged(kubeconfig, namespace, args.count)
        burst_seconds = time.monotonic() - started
        burst_ended_at = dt.datetime.now(dt.UTC)
        cpu_cores = (cpu_seconds(operator.process.pid) - cpu_before) / burst_seconds
        components_after = component_cpu(kubeconfig.parent)
        component_cores = {
            name: round((components_after[name] - components_before.get(name, 0.0)) / burst_seconds, 2)
            for name in components_after
        }
        memory = rss_mib(operator.process.pid)
        operator.stop()

        restarted_at = dt.datetime.now(dt.UTC)
        second = OperatorProcess(operator_config, work / "second.log").start()
        restart_started = time.monotonic()
        while reconciles_done(second.metrics_port) < args.count and time.monotonic() - restart_started < args.timeout:
            time.sleep(0.5)
        restart_seconds = time.monotonic() - restart_started
        time.sleep(3)
        second.stop()
        print(
            json.dumps(
                {
                    "count": args.count,
                    "converged": done,
                    "burst_seconds": round(burst_seconds, 1),
                    "apply_seconds": round(apply_seconds, 1),
                    "control_plane_cores": component_cores,
                    "burst_operator_requests": operator_requests(audit, burst_started_at, burst_ended_at, OPERATOR_USER)
                    if audit.exists()
                    else None,
                    "operator_cpu_cores": round(cpu_cores, 2),
                    "operator_rss_mib": round(memory, 1),
                    "restart_seconds": round(restart_seconds, 1),
                    "restart_mutations": len(audit_mutations(audit, restarted_at, OPERATOR_USER))
                    if audit.exists()
                    else None,
                    "cores": os.cpu_count(),
                },
                indent=2,
            )
        )
    finally:
        if cluster is not None:
            cluster.down()
    return 0


class _Result:
    def __init__(self, stdout: str) -> None:
        self.stdout = stdout


if __name__ == "__main__":
    sys.exit(main())
