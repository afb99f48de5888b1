"""`mmft cluster`: build, start, stop and inspect the local control plane with simulated GKE GPU nodes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

HELP = "local Kubernetes control plane with kwok-simulated GKE Autopilot GPU nodes (build|up|down|status|add-nodes)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="state directory (default: $MMFT_STATE_DIR or <repo>/.state/localcluster)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("build", help="build etcd, kube-apiserver/-controller-manager/-scheduler and kwok (cached)")
    up = actions.add_parser("up", help="start the cluster and print the kubeconfig path")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for start-up (default 120)")
    actions.add_parser("down", help="stop every process the cluster started")
    actions.add_parser("status", help="print what runs, ports, versions and start-up time as JSON")
    add = actions.add_parser("add-nodes", help="add simulated GPU nodes")
    add.add_argument("--accelerator", required=True, help="GKE accelerator name, e.g. nvidia-h100-80gb")
    add.add_argument("--count", type=int, required=True)
    add.add_argument("--spot", action="store_true", help="make them Spot nodes")


def main(args: argparse.Namespace) -> int:
    from mmft_localcluster.cluster import ClusterError, LocalCluster
    from mmft_localcluster.paths import BUILD_SCRIPT

    if args.action == "build":
        return subprocess.run(["bash", str(BUILD_SCRIPT)]).returncode
    cluster = LocalCluster(args.state_dir)
    try:
        if args.action == "up":
            cluster.up(timeout=args.timeout, log=lambda line: print(line, file=sys.stderr))
            print(cluster.kubeconfig)
        elif args.action == "down":
            stopped = cluster.down()
            print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        elif args.action == "status":
            status = cluster.status()
            print(json.dumps(status, indent=2))
            return 0 if status["running"] else 3
        elif args.action == "add-nodes":
            for name in cluster.add_gpu_nodes(args.accelerator, args.count, spot=args.spot):
                print(name)
    except (ClusterError, ValueError) as error:
        print(f"mmft cluster {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
