"""What the operator's cluster-wide watch of Warning events costs, and how fast a start failure reaches status.

On a local control plane (docs/localcluster.md) with the operator running as a subprocess:

1. Same-run baseline: N Normal events in an unrelated namespace. The watch's field selector (type=Warning) means the
   API server never sends them, so the operator's CPU time should not move.
2. N Warning events of a reason the operator ignores (BackOff): sent to the operator, dropped by the index function.
3. N FailedMount Warning events on pods the operator does not manage: kept in the index (events carry no labels),
   dropped when no watched Job owns the pod.
For each: the operator's CPU seconds (utime+stime from /proc) and resident memory before and after.

4. Latency: a DatasetPrep whose pod kwok keeps in ContainerCreating; a FailedMount event posted as the kubelet posts
   it; seconds until `status.reason` is VolumeMountFailed (polled through the API every 0.1 s). Repeated R times.

    python bench/warning_events_watch.py [--events 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))

from cluster_helpers import OperatorProcess, wait_for  # noqa: E402
from mmft_localcluster import LocalCluster, kubectl_path  # noqa: E402
from mmft_localcluster.crds import wait_established  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_and_rss(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    return cpu, rss_kib / 1024


def events(namespace: str, count: int, kind: str, reason: str, prefix: str) -> dict:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{prefix}-{i}", "namespace": namespace},
         "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": f"unrelated-{i}",
                            "uid": f"uid-{prefix}-{i}"},
         "reason": reason, "message": f"{reason} for an unrelated pod", "type": kind,
         "source": {"component": "kubelet"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1}
        for i in range(count)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmft-bench-events-"))
    cluster = LocalCluster(work / "cluster")
    kubeconfig = cluster.up()
    operator = None

    def kubectl(*command: str, input: str | None = None) -> str:
        return subprocess.run([str(kubectl_path()), f"--kubeconfig={kubeconfig}", *command], input=input,
                              capture_output=True, text=True, check=True, timeout=600).stdout

    try:
        kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        wait_established(kubeconfig, "crd", "-l", "app.kubernetes.io/part-of=mmft")
        for namespace in ("noise", "ml"):
            kubectl("create", "namespace", namespace)
        wait_for(lambda: "default" in kubectl("get", "sa", "-n", "ml", "-o", "name"), what="default SA")
        kubectl("create", "serviceaccount", "mmft-workload", "-n", "ml")
        operator = OperatorProcess(kubeconfig, work / "operator.log").start()
        pid = operator.process.pid
        wait_for(lambda: "Initial authentication has finished" in operator.log(), timeout=120, what="operator up")
        time.sleep(10)

        print(f"{'events':<44} {'operator CPU s':>14} {'RSS MiB before':>15} {'after':>8}")
        for label, kind, reason in (("Normal (baseline: filtered by the API server)", "Normal", "Pulled"),
                                    ("Warning BackOff (dropped by the index)", "Warning", "BackOff"),
                                    ("Warning FailedMount, unmanaged pods (kept)", "Warning", "FailedMount")):
            cpu_before, rss_before = cpu_and_rss(pid)
            started = time.monotonic()
            kubectl("create", "-f", "-", input=json.dumps(events("noise", args.events, kind, reason, reason.lower())))
            time.sleep(10)  # let the watch deliver and the operator settle
            cpu_after, rss_after = cpu_and_rss(pid)
            print(f"{args.events} {label:<38} {cpu_after - cpu_before:>14.2f} {rss_before:>15.1f} {rss_after:>8.1f}"
                  f"   (posting + settle {time.monotonic() - started:.0f} s)")

        prep = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/datasetprep.yaml").read_text())
        latencies = []
        for attempt in range(args.repeats):
            name = f"mount-{attempt}"
            prep["metadata"]["name"] = name
            prep["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/waiting-reason": "ContainerCreating"}}
            kubectl("apply", "-n", "ml", "-f", "-", input=yaml.safe_dump(prep))
            pod = wait_for(lambda name=name: json.loads(kubectl("get", "pods", "-n", "ml", "-l",
                                                                f"mmft.io/owner-name={name}", "-o", "json"))["items"],
                           timeout=120, what="pod")[0]
            wait_for(lambda name=name: kubectl("get", "dsp", name, "-n", "ml", "-o", "jsonpath={.status.reason}")
                     == "Starting", timeout=120, what="Starting")
            mount = events("ml", 1, "Warning", "FailedMount", name)["items"][0]
            mount["involvedObject"].update(name=pod["metadata"]["name"], uid=pod["metadata"]["uid"])
            posted = time.monotonic()
            kubectl("create", "-f", "-", input=json.dumps(mount))
            wait_for(lambda name=name: kubectl("get", "dsp", name, "-n", "ml", "-o", "jsonpath={.status.reason}")
                     == "VolumeMountFailed", timeout=120, interval=0.1, what="VolumeMountFailed")
            latencies.append(time.monotonic() - posted)
        print("FailedMount event -> status.reason VolumeMountFailed, seconds (incl. one kubectl per poll): "
              + ", ".join(f"{seconds:.2f}" for seconds in latencies))
    finally:
        if operator is not None:
            operator.stop()
        cluster.down()


if __name__ == "__main__":
    main()
