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
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also start one real node (containerd, kubelet, kube-proxy): opted-in namespaces' pods run in containers",
    )
    up.add_argument(
        "--gcs-emulator",
        metavar="URL",
        help="fake-gcs-server whose buckets exist for the simulated Cloud Storage FUSE mounts (default: every bucket)",
    )
    up.add_argument(
        "--kubernetes-version",
        metavar="VERSION",
        help="the control plane's version: current (default), previous, or its number, e.g. 1.36 (versions.env)",
    )
    load = actions.add_parser("load-image", help="copy Docker images into the real node (docker save | ctr import)")
    load.add_argument("images", nargs="+", metavar="IMAGE")
    namespace = actions.add_parser("real-namespace", help="create a namespace whose pods all run on the real node")
    namespace.add_argument("name")
    install = actions.add_parser(
        "install-mmft", help="install mmft on the real node with its Helm chart (deploy/localcluster/values.yaml)"
    )
    install.add_argument("--tag", default="dev", help="the tag of the loaded mmft images (default dev)")
    bucket = actions.add_parser("bucket", help="create the real node's folder standing in for a bucket; print its path")
    bucket.add_argument("name")
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
    try:
        cluster = LocalCluster(
            args.state_dir,
            real_node=getattr(args, "real_node", False),
            gcs_emulator=getattr(args, "gcs_emulator", None),
            kubernetes_version=getattr(args, "kubernetes_version", None),
        )
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
        elif args.action == "load-image":
            for image in args.images:
                imported = cluster.load_image(image)
                print(f"{image}: {'imported' if imported else 'already loaded'}", file=sys.stderr)
        elif args.action == "real-namespace":
            cluster.create_real_node_namespace(args.name)
            print(args.name)
        elif args.action == "install-mmft":
            cluster.install_mmft(args.tag)
            print("mmft installed in namespace mmft-system (helm release mmft)", file=sys.stderr)
        elif args.action == "bucket":
            from mmft_localcluster.node import NodeError, bucket_dir

            try:
                print(bucket_dir(args.name))
            except (NodeError, OSError) as error:
                raise ClusterError(str(error)) from None
        elif args.action == "add-nodes":
            for name in cluster.add_gpu_nodes(args.accelerator, args.count, spot=args.spot):
                print(name)
    except (ClusterError, ValueError) as error:
        print(f"mmft cluster {args.action}: {error}", file=sys.stderr)
        return 1
    return 0
