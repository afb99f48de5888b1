"""One real node beside the simulated ones: containerd + runc, a kubelet, CNI (bridge + host-local) and kube-proxy.

Pods run in real containers here. The node carries the labels of a GKE CPU node (gke_nodes.CPU_SHAPE), no GPU,
and the taint REAL_NODE_TAINT, so no pod lands on it by accident (the other tests' pods stay on kwok's nodes, where
their annotations pick simulated outcomes). A namespace opts in with REAL_NODE_NAMESPACE_ANNOTATIONS: the
API server's PodNodeSelector and PodTolerationRestriction admission plugins then give each of its pods the node
selector and the toleration, without any change to the pods the operator renders.

Everything lives under ``<state>/node``; only what the kernel keeps machine-wide is outside it, and that is why one
real node runs per machine: the bridge NODE_BRIDGE, kube-proxy's KUBE-* iptables chains, the FORWARD_CHAIN rules,
the kubelet's `kubepods` cgroups, and the shims' sockets under /run/containerd/s. `teardown` removes all of them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mmft_localcluster import gke_nodes, node_image
from mmft_localcluster.gke_nodes import REAL_NODE_NAME
from mmft_localcluster.paths import cache_root, go_version, node_image_binary, read_versions
from mmft_localcluster.pki import PkiPaths

REAL_NODE_LABEL = "mmft.io/real-node"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
REAL_NODE_NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": f"{REAL_NODE_LABEL}=true",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": REAL_NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    ),
}
NODE_ZONE = gke_nodes.ZONES[0]
# Pod addresses of the real node: apart from kwok's (components.POD_CIDR), the services' and Docker's 172.17/16.
POD_SUBNET = ipaddress.ip_network("10.244.0.0/24")
NODE_IP = str(POD_SUBNET[1])  # the bridge's address: the node's InternalIP and the API server's advertised address
NODE_BRIDGE = "mmft0"
CNI_NETWORK = "mmft-real-node"
FORWARD_CHAIN = "MMFT-NODE-FORWARD"
CNI_PLUGIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
PAUSE_IMAGE_REPOSITORY = "mmft.local/pause"
GCS_EMULATOR_IMAGE_REPOSITORY = "mmft.local/fake-gcs-server"
CONTAINERD_NAMESPACE = "k8s.io"
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
# Buckets of the real node's pods (MMFT_BUCKET_VOLUME=hostPath:<this> in deploy/localcluster): one folder per bucket.
# On the machine, not in a state directory: the overlay names one fixed path, and there is one real node per machine.
# `down` leaves it, as deleting a cluster leaves its buckets.
BUCKETS_ROOT = Path("/var/lib/mmft-localcluster/buckets")
# Names the state directory of the cluster whose real node owns the machine-wide parts above.
OWNER_FILE = Path("/run/mmft-real-node.owner")
# Debian packages that provide what the node needs from the machine, named in the error when one is missing.
APT_PACKAGES = "containernetworking-plugins iptables conntrack iproute2 libseccomp-dev"


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeBinaries:
    kubelet: Path
    kube_proxy: Path
    containerd: Path
    containerd_shim: Path
    ctr: Path
    runc: Path
    pause: Path
    gcs_emulator: Path

    @classmethod
    def from_cache(cls) -> NodeBinaries:
        versions, root, go = read_versions(), cache_root(), go_version()
        kubernetes = root / f"kubernetes-{versions['KUBERNETES_VERSION']}-{go}"
        containerd = root / f"containerd-{versions['CONTAINERD_VERSION']}-{go}"
        return cls(
            kubelet=kubernetes / "kubelet",
            kube_proxy=kubernetes / "kube-proxy",
            containerd=containerd / "containerd",
            containerd_shim=containerd / "containerd-shim-runc-v2",
            ctr=containerd / "ctr",
            runc=root / f"runc-{versions['RUNC_VERSION']}-{go}" / "runc",
            pause=node_image_binary("pause"),
            gcs_emulator=root / f"fake-gcs-server-{versions['FAKE_GCS_SERVER_VERSION']}-{go}" / "fake-gcs-server",
        )

    def missing(self) -> list[Path]:
        return [path for path in vars(self).values() if not os.access(path, os.X_OK)]


# The three mmft images and the sample pipeline's containers took ~11 GB on the node (free space 18 -> 7 GB during
# test_real_pipeline.py, 2026-12-05), and the kubelet evicts below 1Gi free (kubelet_config): with less free space the
# node turns DiskPressure and every image load or pod start fails far from the cause. A floor, not a guarantee.
MIN_FREE_GIB = 10


def free_space_problem(directory: Path, minimum_gib: float) -> str | None:
    """Why the filesystem that will hold `directory` is too full for the real node, or None."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    free_gib = shutil.disk_usage(existing).free / 2**30
    if free_gib >= minimum_gib:
        return None
    return (
        f"only {free_gib:.1f} GiB free under {existing} ({minimum_gib:g} GiB needed: the images and the pipeline's "
        "containers take ~11 GB on the node and the kubelet evicts pods below 1 GiB free); free some, e.g. "
        "`docker image prune`, old /tmp/pytest-of-*/ folders, or point --state-dir elsewhere"
    )


def missing_prerequisites() -> list[str]:
    """What the machine lacks to run the real node, each with the way to get it; empty when nothing is missing."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root: the kubelet, containerd and kube-proxy need it (run as root)")
    for plugin in CNI_PLUGINS:
        if not (CNI_PLUGIN_DIR / plugin).is_file():
            missing.append(f"CNI plugin {CNI_PLUGIN_DIR / plugin}: apt-get install -y containernetworking-plugins")
    for command, package in (("iptables", "iptables"), ("conntrack", "conntrack"), ("ip", "iproute2")):
        if shutil.which(command) is None:
            missing.append(f"the {command} command: apt-get install -y {package}")
    if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").is_file():
        missing.append(f"a cgroup file system at {CGROUP_ROOT} (mount it, or run on a machine that has one)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("the overlay file system (modprobe overlay)")
    if not Path("/dev/kmsg").exists():
        missing.append("/dev/kmsg, which the kubelet reads (a machine or container that has it)")
    if not Path("/usr/include/seccomp.h").exists():
        missing.append("libseccomp's headers, to build runc with seccomp: apt-get install -y libseccomp-dev")
    return missing


@dataclass(frozen=True)
class NodeFiles:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "node"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_root(self) -> Path:
        # Kept across `up`s of this state directory: imported images stay (see load_image).
        return self.root / "containerd-root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def volumes(self) -> Path:
        """Folders of the node's PersistentVolumes (provisioner.py)."""
        return self.root / "volumes"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def loaded_images(self) -> Path:
        return self.root / "loaded-images.json"

    @property
    def saved_sysctls(self) -> Path:
        return self.root / "sysctls.json"

    def runtime_dirs(self) -> list[Path]:
        """Wiped at each start: nothing in them outlives the processes that wrote them."""
        return [self.containerd_state, self.kubelet_root, self.root / "cni", self.images_dir, self.volumes]


def pause_image_reference(binaries: NodeBinaries) -> str:
    return f"{PAUSE_IMAGE_REPOSITORY}:{binaries.pause.parent.name.removeprefix('pause-')}"


def gcs_emulator_image_reference() -> str:
    """fake-gcs-server built from its Go module (build-node.sh), as deploy/localcluster/gcs-emulator.yaml names it."""
    return f"{GCS_EMULATOR_IMAGE_REPOSITORY}:{read_versions()['FAKE_GCS_SERVER_VERSION']}"


def node_labels() -> dict[str, str]:
    """A GKE CPU node's labels (gke_nodes.CPU_SHAPE), less those the kubelet sets itself and kwok's `type`."""
    labels = gke_nodes.node_manifest(REAL_NODE_NAME, gke_nodes.CPU_SHAPE, NODE_ZONE)["metadata"]["labels"]
    kubelet_owned = {"kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "type"}
    return {**{k: v for k, v in labels.items() if k not in kubelet_owned}, REAL_NODE_LABEL: "true"}


def containerd_config(files: NodeFiles, binaries: NodeBinaries) -> str:
    def quoted(value: object) -> str:
        return json.dumps(str(value))  # a TOML basic string is a JSON string for these paths

    runtime = '[plugins."io.containerd.cri.v1.runtime"'
    return f"""\
version = 4
root = {quoted(files.containerd_root)}
state = {quoted(files.containerd_state)}
# NRI would listen on /var/run/nri/nri.sock, shared by every containerd on the machine; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[plugins."io.containerd.server.v1.grpc"]
  address = {quoted(files.containerd_socket)}

[plugins."io.containerd.server.v1.ttrpc"]
  address = {quoted(str(files.containerd_socket) + ".ttrpc")}

[plugins."io.containerd.internal.v1.opt"]
  path = {quoted(files.root / "containerd-opt")}

{runtime}]
  # runc cannot lower oom_score_adj below its own without CAP_SYS_RESOURCE, which this machine's processes lack.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not /var/run/netns: teardown unmounts them with the rest.
  netns_mounts_under_state_dir = true

{runtime}.containerd]
  default_runtime_name = "runc"

{runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{runtime}.containerd.runtimes.runc.options]
  BinaryName = {quoted(binaries.runc)}
  Root = {quoted(files.containerd_state / "runc")}
  SystemdCgroup = false

{runtime}.cni]
  bin_dirs = [{quoted(CNI_PLUGIN_DIR)}]
  conf_dir = {quoted(files.cni_conf_dir)}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  # Imported by `up` (no registry is reachable for registry.k8s.io/pause).
  sandbox = {quoted(pause_image_reference(binaries))}
"""


def cni_config(files: NodeFiles) -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": NODE_BRIDGE,
                    "isGateway": True,
                    # Pods only talk to each other, to Services and to the API server on the bridge's address.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(POD_SUBNET), "gateway": NODE_IP}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(files.cni_ipam_dir),
                    },
                },
            ],
        },
        indent=2,
    )


def kubelet_config(files: NodeFiles, pki: PkiPaths, port: int) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubelet 1.35+ refuses cgroup v1 unless told otherwise; this machine has only v1 controllers.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{files.containerd_socket}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "authentication": {
            "x509": {"clientCAFile": str(pki.ca_cert)},
            "webhook": {"enabled": True},
            "anonymous": {"enabled": False},
        },
        "authorization": {"mode": "Webhook"},
        "registerWithTaints": [REAL_NODE_TAINT],
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "failSwapOn": False,
        "serializeImagePulls": False,
        # Imported images are the only copies: never garbage-collect them to make room.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Absolute and small: a development disk shared with Docker's images is often fuller than the default 10%
        # allows, and a tainted node would stop the pipeline for the 5-minute default transition period.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1Gi", "imagefs.available": "1Gi"},
        "evictionPressureTransitionPeriod": "30s",
        "podPidsLimit": 4096,
        "maxPods": 50,
    }
    return json.dumps(config, indent=2)


def kubelet_command(binaries: NodeBinaries, files: NodeFiles, kubeconfig: Path) -> list[str]:
    labels = ",".join(f"{key}={value}" for key, value in sorted(node_labels().items()))
    return [
        str(binaries.kubelet),
        f"--config={files.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={files.kubelet_root}",
        f"--hostname-override={REAL_NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_command(binaries: NodeBinaries, kubeconfig: Path, healthz_port: int, metrics_port: int) -> list[str]:
    return [
        str(binaries.kube_proxy),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={REAL_NODE_NAME}",
        # iptables (nf_tables underneath on this machine, through Debian's iptables-nft).
        "--proxy-mode=iptables",
        f"--cluster-cidr={POD_SUBNET}",
        f"--healthz-bind-address=127.0.0.1:{healthz_port}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        # 0: leave the machine's conntrack table size and timeouts alone (the sysctls are not ours to change).
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--iptables-localhost-nodeports=false",
    ]


def containerd_command(binaries: NodeBinaries, files: NodeFiles) -> list[str]:
    return [str(binaries.containerd), f"--config={files.containerd_config}", "--log-level=warn"]


def containerd_env(binaries: NodeBinaries) -> dict[str, str]:
    """containerd finds its shim on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(binaries.containerd.parent), env.get("PATH", "/usr/bin:/bin")])
    return env


def _run(*argv: str, check: bool = True, input: bytes | None = None, timeout: float = 120):  # -> CompletedProcess
    result = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {error}")
    return result


class RealNode:
    """Start and tear down the node's machine-side parts; LocalCluster starts its processes."""

    def __init__(self, state_dir: Path, binaries: NodeBinaries | None = None):
        self.files = NodeFiles(state_dir)
        self._binaries = binaries

    @property
    def binaries(self) -> NodeBinaries:
        if self._binaries is None:
            self._binaries = NodeBinaries.from_cache()
        return self._binaries

    def ctr(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 600):
        address = f"--address={self.files.containerd_socket}"
        namespace = f"--namespace={CONTAINERD_NAMESPACE}"
        return _run(str(self.binaries.ctr), address, namespace, *args, check=check, input=input, timeout=timeout)

    # --- before the processes start -------------------------------------------------------------------------------

    def check_machine(self) -> None:
        """Refuses to start, naming what is missing or in the way, before anything has been started."""
        problems = missing_prerequisites()
        if problems:
            raise NodeError(
                "the real node cannot start on this machine; missing:\n  - "
                + "\n  - ".join(problems)
                + f"\n(all packages at once: apt-get install -y {APT_PACKAGES})"
            )
        owner = _owner()
        if owner is not None and owner != self.files.state_dir.resolve() and _kubelet_running(owner):
            raise NodeError(
                f"another local cluster runs the real node on this machine (one per machine): "
                f"`mmft cluster down --state-dir {owner}` first"
            )
        for route in _run("ip", "-4", "route", "show").stdout.decode().splitlines():
            destination = route.split()[0]
            if destination != "default" and NODE_BRIDGE not in route.split():
                network = ipaddress.ip_network(destination, strict=False)
                if network.overlaps(POD_SUBNET):
                    raise NodeError(f"the real node's pod subnet {POD_SUBNET} overlaps this machine's route {route!r}")
        if problem := free_space_problem(self.files.state_dir, MIN_FREE_GIB):
            raise NodeError(f"the real node cannot start: {problem}")
        if len(str(self.files.containerd_socket)) > 100:
            raise NodeError(f"state directory too deep for a unix socket path: {self.files.containerd_socket}")

    def prepare(self, pki: PkiPaths, kubelet_port: int) -> None:
        """Writes the configuration, sets up the bridge, forwarding and the pause image's archive."""
        files = self.files
        for directory in files.runtime_dirs():
            shutil.rmtree(directory, ignore_errors=True)
        for directory in (files.containerd_root, files.cni_conf_dir, files.cni_ipam_dir, files.images_dir):
            directory.mkdir(parents=True, exist_ok=True)
        files.containerd_config.write_text(containerd_config(files, self.binaries))
        (files.cni_conf_dir / "10-mmft.conflist").write_text(cni_config(files))
        files.kubelet_config.write_text(kubelet_config(files, pki, kubelet_port))
        OWNER_FILE.write_text(f"{self.files.state_dir.resolve()}\n")
        self._set_sysctls({"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"})
        # The bridge exists before the kubelet, which checks that its --node-ip is on this machine; the CNI bridge
        # plugin then attaches the pods' veths to it.
        if not _link_exists(NODE_BRIDGE):
            _run("ip", "link", "add", NODE_BRIDGE, "type", "bridge")
        _run("ip", "addr", "replace", f"{NODE_IP}/{POD_SUBNET.prefixlen}", "dev", NODE_BRIDGE)
        _run("ip", "link", "set", NODE_BRIDGE, "up")
        # Docker sets the FORWARD policy to DROP; pods on the bridge (bridged frames go through iptables with
        # br_netfilter) and Service traffic routed back to the bridge must still pass.
        _run("iptables", "-w", "-N", FORWARD_CHAIN, check=False)
        _run("iptables", "-w", "-F", FORWARD_CHAIN)
        _run("iptables", "-w", "-A", FORWARD_CHAIN, "-i", NODE_BRIDGE, "-j", "ACCEPT")
        _run("iptables", "-w", "-A", FORWARD_CHAIN, "-o", NODE_BRIDGE, "-j", "ACCEPT")
        if _run("iptables", "-w", "-C", "FORWARD", "-j", FORWARD_CHAIN, check=False).returncode != 0:
            _run("iptables", "-w", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN)

    def import_own_images(self) -> None:
        """The sandbox image and the GCS emulator's, both made here from static binaries."""
        self.import_binary_image(self.binaries.pause, pause_image_reference(self.binaries))
        self.import_binary_image(self.binaries.gcs_emulator, gcs_emulator_image_reference())

    def import_binary_image(self, binary: Path, reference: str) -> None:
        """An image of one static binary (its entry point, /<name>), written here and imported without Docker."""
        archive = self.files.images_dir / f"{binary.name}.tar"
        node_image.write_single_binary_image(binary, f"/{binary.name}", reference, archive)
        self.ctr("images", "import", str(archive), timeout=120)

    def containerd_ready(self) -> bool:
        return self.files.containerd_socket.exists() and self.ctr("version", check=False, timeout=10).returncode == 0

    # --- images ---------------------------------------------------------------------------------------------------

    def load_image(self, reference: str, docker: str = "docker") -> bool:
        """`docker save REFERENCE | ctr images import`; skipped when this image ID is already loaded. Returns whether
        it imported."""
        inspected = _run(docker, "image", "inspect", "--format", "{{.Id}}", reference, check=False)
        if inspected.returncode != 0:
            raise NodeError(
                f"image {reference} is not in the local Docker engine: {inspected.stderr.decode().strip()} "
                "(build it first, e.g. bash localcluster/build-images.sh)"
            )
        image_id = inspected.stdout.decode().strip()
        loaded = json.loads(self.files.loaded_images.read_text()) if self.files.loaded_images.exists() else {}
        present = self.ctr("images", "ls", "-q", check=False).stdout.decode().split()
        if loaded.get(reference) == image_id and _normalized(reference) in present:
            return False
        save = subprocess.Popen([docker, "save", reference], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            importing = subprocess.run(
                [str(self.binaries.ctr), f"--address={self.files.containerd_socket}",
                 f"--namespace={CONTAINERD_NAMESPACE}", "images", "import", "-"],
                stdin=save.stdout, capture_output=True, timeout=1800,
            )
        finally:
            save.stdout.close()
            save_error = save.stderr.read().decode(errors="replace")
            save.wait()
        # The import first: when it dies, docker save only sees a broken pipe (-13), which says nothing.
        if importing.returncode != 0:
            why = importing.stderr.decode().strip()
            if problem := free_space_problem(self.files.containerd_root, minimum_gib=1):
                why = f"{why}; {problem}"
            raise NodeError(f"ctr images import of {reference} failed: {why}")
        if save.returncode != 0:
            raise NodeError(f"docker save {reference} failed ({save.returncode}): {save_error.strip()}")
        loaded[reference] = image_id
        self.files.loaded_images.write_text(json.dumps(loaded, indent=2))
        return True

    # --- teardown ---------------------------------------------------------------------------------------------------

    def remove_containers(self) -> None:
        """With containerd still running: kill and delete every task and container of the node."""
        if not self.containerd_ready():
            return
        for task in self.ctr("tasks", "ls", "-q", check=False, timeout=30).stdout.decode().split():
            self.ctr("tasks", "kill", "--all", "--signal=SIGKILL", task, check=False, timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=30).stdout.decode().split()
            for task in tasks:
                self.ctr("tasks", "delete", "--force", task, check=False, timeout=30)
            if not tasks:
                break
            time.sleep(0.2)
        containers = self.ctr("containers", "ls", "-q", check=False, timeout=30).stdout.decode().split()
        if containers:
            self.ctr("containers", "delete", *containers, check=False, timeout=60)

    def teardown(self) -> None:
        """After the node's processes have stopped: every leftover process, mount, network object, iptables rule and
        cgroup it made. Safe to run again, and after a crash."""
        for pid in self.leftover_processes():
            _kill(pid)
        _wait_gone(self.leftover_processes, 10)
        for mount_point in self.mounts():
            if _run("umount", str(mount_point), check=False).returncode != 0:
                _run("umount", "--lazy", str(mount_point), check=False)
        for directory in self.files.runtime_dirs():
            shutil.rmtree(directory, ignore_errors=True)
        if _owner() not in (None, self.files.state_dir.resolve()):
            return  # the machine-wide parts belong to another cluster's real node now
        for veth in _bridge_ports(NODE_BRIDGE):
            _run("ip", "link", "delete", veth, check=False)
        if _link_exists(NODE_BRIDGE):
            _run("ip", "link", "delete", NODE_BRIDGE, check=False)
        if _run("iptables", "-w", "-C", "FORWARD", "-j", FORWARD_CHAIN, check=False).returncode == 0:
            _run("iptables", "-w", "-D", "FORWARD", "-j", FORWARD_CHAIN, check=False)
        _run("iptables", "-w", "-F", FORWARD_CHAIN, check=False)
        _run("iptables", "-w", "-X", FORWARD_CHAIN, check=False)
        if os.access(self.binaries.kube_proxy, os.X_OK) and self.kube_proxy_chains():
            # kube-proxy's own clean-up of the chains and rules it made (all proxy modes).
            _run(str(self.binaries.kube_proxy), "--cleanup", check=False, timeout=60)
        # The kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), IPv4 and IPv6.
        for family in ("iptables", "ip6tables"):
            _remove_chains(family, "KUBE-")
        for directory in sorted(_kubepods_cgroups(), key=lambda path: len(path.parts), reverse=True):
            try:
                directory.rmdir()
            except OSError:
                pass
        self._restore_sysctls()
        OWNER_FILE.unlink(missing_ok=True)

    def leftover_processes(self) -> list[int]:
        """Shims of this node's containerd, and anything still in the kubelet's pod cgroups."""
        socket = str(self.files.containerd_socket)
        pids = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                command_line = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "containerd-shim" in command_line and socket in command_line:
                pids.add(int(proc.name))
        for cgroup in _kubepods_cgroups() if _owner() in (None, self.files.state_dir.resolve()) else []:
            try:
                pids.update(int(pid) for pid in (cgroup / "cgroup.procs").read_text().split())
            except OSError:
                pass
        pids.discard(os.getpid())
        return sorted(pid for pid in pids if _alive(pid))

    def mounts(self) -> list[Path]:
        """Mount points under the node's directory, deepest first."""
        root = str(self.files.root.resolve()) if self.files.root.exists() else str(self.files.root)
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root + "/"):
                points.append(Path(point))
        return sorted(set(points), key=lambda path: len(path.parts), reverse=True)

    @staticmethod
    def kube_proxy_chains() -> list[str]:
        """Every KUBE-* chain, IPv4 and IPv6 (kube-proxy's and the kubelet's), as FAMILY/TABLE/CHAIN."""
        return [
            f"{family}/{table}/{chain}"
            for family in ("iptables", "ip6tables")
            for table, chain, _rules in _saved_chains(family)
            if chain.startswith("KUBE-")
        ]

    # --- sysctls ----------------------------------------------------------------------------------------------------

    def _set_sysctls(self, wanted: dict[str, str]) -> None:
        saved = json.loads(self.files.saved_sysctls.read_text()) if self.files.saved_sysctls.exists() else {}
        for key, value in wanted.items():
            path = Path("/proc/sys") / key
            current = path.read_text().strip()
            saved.setdefault(key, current)
            if current != value:
                path.write_text(value)
        self.files.saved_sysctls.write_text(json.dumps(saved))

    def _restore_sysctls(self) -> None:
        if not self.files.saved_sysctls.exists():
            return
        for key, value in json.loads(self.files.saved_sysctls.read_text()).items():
            try:
                (Path("/proc/sys") / key).write_text(value)
            except OSError:
                pass
        self.files.saved_sysctls.unlink()


def bucket_dir(bucket: str) -> Path:
    """The folder that stands in for ``bucket`` on the real node, created writable for the pods' non-root uid."""
    if not bucket or "/" in bucket or bucket in (".", ".."):
        raise NodeError(f"not a bucket name: {bucket!r}")
    folder = BUCKETS_ROOT / bucket
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)
    return folder


def _normalized(reference: str) -> str:
    """containerd's name for a Docker reference: docker.io/library/ for bare names, :latest when untagged."""
    name = reference
    first = name.split("/")[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


def _saved_chains(family: str) -> list[tuple[str, str, list[str]]]:
    """(table, chain, rules as `-A ...` lines) from FAMILY-save; empty when the command is missing or fails."""
    if shutil.which(f"{family}-save") is None:
        return []
    saved = _run(f"{family}-save", check=False).stdout.decode(errors="replace")
    chains: dict[tuple[str, str], list[str]] = {}
    table = ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            chains.setdefault((table, line[1:].split()[0]), [])
        elif line.startswith("-A "):
            chains.setdefault((table, line.split()[1]), []).append(line)
    return [(table, chain, rules) for (table, chain), rules in chains.items()]


def _remove_chains(family: str, prefix: str) -> None:
    """Deletes the jumps into chains named PREFIX* from other chains, then those chains."""
    saved = _saved_chains(family)
    for table, chain, rules in saved:
        if chain.startswith(prefix):
            continue
        for rule in rules:
            arguments = shlex.split(rule)
            targets = [arguments[i + 1] for i in range(len(arguments) - 1) if arguments[i] in ("-j", "-g")]
            if any(target.startswith(prefix) for target in targets):
                _run(family, "-w", "-t", table, "-D", *arguments[1:], check=False)
    ours = [(table, chain) for table, chain, _rules in saved if chain.startswith(prefix)]
    for table, chain in ours:
        _run(family, "-w", "-t", table, "-F", chain, check=False)
    for table, chain in ours:
        _run(family, "-w", "-t", table, "-X", chain, check=False)


def _owner() -> Path | None:
    try:
        return Path(OWNER_FILE.read_text().strip())
    except FileNotFoundError:
        return None


def _kubelet_running(state_dir: Path) -> bool:
    pid_file = state_dir / "pids" / "kubelet.pid"
    try:
        return _alive(int(pid_file.read_text().split()[0]))
    except (OSError, ValueError):
        return False


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _bridge_ports(bridge: str) -> list[str]:
    ports = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(port.name for port in ports.iterdir()) if ports.is_dir() else []


def _kubepods_cgroups() -> list[Path]:
    found = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / KUBEPODS
        if top.is_dir() and not top.is_symlink():
            found += [top, *(path for path in top.rglob("*") if path.is_dir())]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_gone(pids, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pids() and time.monotonic() < deadline:
        time.sleep(0.1)
