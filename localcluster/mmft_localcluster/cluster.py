"""The local control plane: start it, stop it, ask it what runs, add simulated GPU nodes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mmft_localcluster import autopilot_admission, components, gke_nodes, node, pki
from mmft_localcluster.components import ComponentFiles, Ports
from mmft_localcluster.node import NodeError, RealNode
from mmft_localcluster.paths import (
    BUILD_SCRIPT,
    REPO_ROOT,
    Binaries,
    default_state_dir,
    kubectl_path,
    read_versions,
    resolve_kubernetes_version,
    supported_kubernetes_versions,
    tool_path,
)
from mmft_localcluster.processes import ProcessTable

CONTROL_PLANE = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "provisioner", "volume-simulator"
)
REAL_NODE_PROCESSES = ("containerd", "kubelet", "kube-proxy")
COMPONENT_IDENTITIES = {
    "admin": pki.ADMIN,
    "controller-manager": pki.CONTROLLER_MANAGER,
    "scheduler": pki.SCHEDULER,
    "kwok": pki.KWOK,
    "provisioner": pki.PROVISIONER,
    "volume-simulator": pki.VOLUME_SIMULATOR,
    "real-node-kubelet": pki.REAL_NODE_KUBELET,
    "kube-proxy": pki.KUBE_PROXY,
}


# mmft on the real node (install_mmft): the namespace and GCS emulator of deploy/localcluster, then the Helm chart.
LOCAL_DEPLOY = REPO_ROOT / "deploy/localcluster"
CHART = REPO_ROOT / "deploy/helm/mmft"
MMFT_NAMESPACE = "mmft-system"


class ClusterError(RuntimeError):
    pass


class LocalCluster:
    """A kube-apiserver/controller-manager/scheduler on etcd, with kwok playing GKE Autopilot GPU nodes."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        real_node: bool = False,
        gcs_emulator: str | None = None,
        kubernetes_version: str | None = None,
    ):
        """``gcs_emulator``: URL of a fake-gcs-server whose buckets are the ones that exist for the simulated Cloud
        Storage FUSE mounts (volume_simulator.py); without it every bucket is taken to exist.
        ``kubernetes_version``: the control plane's, "previous" or a version of versions.env (default: the newest);
        the real node's kubelet is the newest only, so it runs with that one alone."""
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        try:
            self.kubernetes_version = resolve_kubernetes_version(kubernetes_version)
        except ValueError as error:
            raise ClusterError(str(error)) from None
        newest = supported_kubernetes_versions()[0]
        if real_node and self.kubernetes_version != newest:
            raise ClusterError(
                f"the real node's kubelet is built for {newest} only; start {self.kubernetes_version} without the "
                "real node"
            )
        self.gcs_emulator = gcs_emulator
        self.processes = ProcessTable(self.state_dir)
        self.real_node = real_node
        self.node = RealNode(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def is_running(self) -> bool:
        expected = set(CONTROL_PLANE) | (set(REAL_NODE_PROCESSES) if self._has_real_node() else set())
        return self.state_file.exists() and expected <= set(self.processes.running())

    def _has_real_node(self) -> bool:
        """From the running cluster's state when there is one, else what this object was asked for."""
        if self.state_file.exists():
            return bool(json.loads(self.state_file.read_text()).get("real_node"))
        return self.real_node

    def up(self, timeout: float = 120.0, log: Callable[[str], None] = print) -> Path:
        """Starts a fresh cluster (or keeps a running one) and returns the admin kubeconfig's path."""
        with self._exclusive():
            return self._up(timeout, log)

    def _up(self, timeout: float, log: Callable[[str], None]) -> Path:
        if self.is_running():
            running_with_node = self._has_real_node()
            if running_with_node != self.real_node:
                raise ClusterError(
                    f"a cluster {'with' if running_with_node else 'without'} the real node already runs in "
                    f"{self.state_dir}; `mmft cluster down` first"
                )
            # A cluster started before the state recorded its version ran the newest one.
            running_version = json.loads(self.state_file.read_text()).get(
                "kubernetes_version", supported_kubernetes_versions()[0]
            )
            if running_version != self.kubernetes_version:
                raise ClusterError(
                    f"a cluster of Kubernetes {running_version} already runs in {self.state_dir}; "
                    "`mmft cluster down` first"
                )
            log(f"cluster already running; kubeconfig: {self.kubeconfig}")
            return self.kubeconfig
        self._stop_everything()  # leftovers of a crashed or half-started run
        if self.real_node:
            try:
                self.node.check_machine()  # before anything starts: nothing is left half-started
            except NodeError as error:
                raise ClusterError(str(error)) from None
        binaries = self._binaries(log)
        started = time.monotonic()
        deadline = started + timeout
        self._reset_state_dir()
        files = ComponentFiles(self.state_dir, pki.create_pki(self.state_dir / "pki"))
        ports = Ports(*_free_ports(6 if self.real_node else 3))
        self._write_kubeconfigs(files, ports)
        files.audit_policy.write_text(components.AUDIT_POLICY)
        node_ip = node.NODE_IP if self.real_node else None
        try:
            self.processes.start("etcd", components.etcd_command(binaries, files, ports))
            self._wait("etcd", deadline, lambda: _http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"))
            phases = {"etcd_healthy": round(time.monotonic() - started, 2)}
            self.processes.start("kube-apiserver", components.apiserver_command(binaries, files, ports, node_ip))
            self._wait("kube-apiserver", deadline, lambda: self._apiserver_ready(files, ports))
            phases["apiserver_ready"] = round(time.monotonic() - started, 2)
            # Before any pod: the simulated Autopilot admission (docs/autopilot-admission.md) judges them all.
            self.create(autopilot_admission.manifests())
            self.processes.start("kube-controller-manager", components.controller_manager_command(binaries, files))
            self.processes.start("kube-scheduler", components.scheduler_command(binaries, files))
            self.processes.start("kwok", components.kwok_command(binaries, files))
            volumes = self.node.files.volumes if self.real_node else None
            self.processes.start("provisioner", components.provisioner_command(files, volumes), env=_python_env())
            self.processes.start(
                "volume-simulator", components.volume_simulator_command(files, self.gcs_emulator), env=_python_env()
            )
            self.create(gke_nodes.storage_manifests() + gke_nodes.default_nodes())
            self._wait("kwok", deadline, self._nodes_ready)
            phases["nodes_schedulable"] = round(time.monotonic() - started, 2)
            self._wait("kube-controller-manager", deadline, self._default_service_account_exists)
            self._wait("kube-apiserver", deadline, self._autopilot_admission_active)
            if self.real_node:
                self._start_real_node(files, ports, deadline)
                phases["real_node_ready"] = round(time.monotonic() - started, 2)
        except BaseException:
            self._stop_everything()
            raise
        startup_seconds = round(time.monotonic() - started, 2)
        self.state_file.write_text(
            json.dumps(
                {
                    "ports": vars(ports),
                    "real_node": node.REAL_NODE_NAME if self.real_node else None,
                    "kubernetes_version": self.kubernetes_version,
                    "versions": read_versions(),
                    "startup_seconds": startup_seconds,
                    "startup_phases_seconds": phases,
                    "kubeconfig": str(self.kubeconfig),
                    "audit_log": str(self.audit_log),
                },
                indent=2,
            )
        )
        log(f"cluster up in {startup_seconds} s; kubeconfig: {self.kubeconfig}")
        return self.kubeconfig

    def down(self) -> list[str]:
        with self._exclusive():
            stopped = self._stop_everything()
            self.state_file.unlink(missing_ok=True)
            return stopped

    def _stop_everything(self) -> list[str]:
        """The real node first, while the control plane still runs (so its pods' containers go with containerd
        still answering), then the rest newest first."""
        stopped = [name for name in ("kube-proxy", "kubelet") if self.processes.stop(name)]
        if self.node.files.root.exists():
            self.node.remove_containers()
        if self.processes.stop("containerd"):
            stopped.append("containerd")
        if self.node.files.root.exists():
            self.node.teardown()
        return stopped + self.processes.stop_all()

    def load_image(self, reference: str) -> bool:
        """Copies a local Docker engine's image into the real node's containerd (`docker save | ctr images import`);
        returns False when that image ID was loaded already."""
        if not self._has_real_node() or not self.is_running():
            raise ClusterError("no running cluster with a real node here: `mmft cluster up --real-node` first")
        try:
            return self.node.load_image(reference)
        except NodeError as error:
            raise ClusterError(str(error)) from None

    def create_real_node_namespace(self, name: str, timeout: float = 60) -> None:
        """A namespace whose pods all go to the real node (its opt-in annotations), with its default ServiceAccount
        (pods are refused before it exists)."""
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "annotations": dict(node.REAL_NODE_NAMESPACE_ANNOTATIONS)},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(namespace))
        self._wait("kube-controller-manager", time.monotonic() + timeout,
                   lambda: self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0)

    def install_mmft(self, tag: str = "dev", timeout: float = 240) -> None:
        """mmft on the real node, installed the way users install it: deploy/localcluster applied (the operator's
        namespace, the GCS emulator), then `helm upgrade --install` of deploy/helm/mmft with
        deploy/localcluster/values.yaml and the images' tag. Returns once the operator's pod is ready. The images must
        be loaded (load_image); the emulator restarts so that it serves every bucket folder made so far."""
        if not self._has_real_node() or not self.is_running():
            raise ClusterError("no running cluster with a real node here: `mmft cluster up --real-node` first")
        self.kubectl("apply", "--server-side", "-k", str(LOCAL_DEPLOY))
        self.kubectl("-n", "mmft-gcs-emulator", "rollout", "restart", "deployment/gcs-emulator")
        try:
            helm = str(tool_path("helm"))
        except RuntimeError as error:
            raise ClusterError(str(error)) from None
        command = [
            helm, "upgrade", "--install", "mmft", str(CHART), f"--kubeconfig={self.kubeconfig}",
            f"--namespace={MMFT_NAMESPACE}", f"--values={LOCAL_DEPLOY / 'values.yaml'}",
            f"--set=image.tag={tag}", f"--set=workloadImage=mmft-workload:{tag}",
            f"--set=tensorboardImage=mmft-tensorboard:{tag}", "--wait", f"--timeout={int(timeout)}s",
        ]  # fmt: skip
        installed = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 60)
        if installed.returncode != 0:
            raise ClusterError(f"helm upgrade --install mmft failed: {installed.stderr.strip() or installed.stdout}")
        self.kubectl("-n", "mmft-gcs-emulator", "rollout", "status", "deployment/gcs-emulator",
                     f"--timeout={int(timeout)}s", timeout=timeout + 30)

    def _start_real_node(self, files: ComponentFiles, ports: Ports, deadline: float) -> None:
        real = self.node
        real.prepare(files.pki, ports.kubelet)
        self.processes.start("containerd", node.containerd_command(real.binaries, real.files),
                             env=node.containerd_env(real.binaries))
        self._wait("containerd", deadline, real.containerd_ready)
        real.import_own_images()
        kubelet_kubeconfig = files.kubeconfig("real-node-kubelet")
        self.processes.start("kubelet", node.kubelet_command(real.binaries, real.files, kubelet_kubeconfig))
        self.processes.start(
            "kube-proxy",
            node.kube_proxy_command(
                real.binaries, files.kubeconfig("kube-proxy"), ports.kube_proxy_healthz, ports.kube_proxy_metrics
            ),
        )
        self._wait("kubelet", deadline, self._real_node_schedulable)
        self._wait("kube-proxy", deadline, lambda: _http_ok(f"http://127.0.0.1:{ports.kube_proxy_healthz}/healthz"))

    @contextlib.contextmanager
    def _exclusive(self):
        """One `up` or `down` at a time per state directory: two racing `up`s would orphan each other's processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def status(self) -> dict:
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        return {"running": self.is_running(), "processes": self.processes.running(), **state}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        command = [str(kubectl_path()), f"--kubeconfig={self.kubeconfig}", *args]
        # errors="replace": container logs (progress bars) need not be valid UTF-8 where kubectl cuts them.
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, errors="replace", timeout=timeout
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def create(self, manifests: list[dict]) -> None:
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
        self.kubectl("create", "-f", "-", input=document)

    def add_gpu_nodes(self, accelerator: str, count: int, spot: bool = False) -> list[str]:
        """Adds ``count`` more simulated nodes of ``accelerator`` (e.g. for a scale benchmark); returns their names."""
        provisioning = "spot" if spot else "standard"
        selector = f"cloud.google.com/gke-accelerator={accelerator},cloud.google.com/gke-provisioning={provisioning}"
        existing = self.kubectl("get", "nodes", "-l", selector, "-o", "name").stdout.split()
        nodes = gke_nodes.gpu_nodes(accelerator, count, first_index=len(existing), spot=spot)
        self.create(nodes)
        self._wait("kwok", time.monotonic() + 120, self._nodes_ready)
        return [node["metadata"]["name"] for node in nodes]

    def _binaries(self, log: Callable[[str], None]) -> Binaries:
        binaries = Binaries.from_cache(self.kubernetes_version)
        node_missing = self.node.binaries.missing if self.real_node else list
        if binaries.missing() or node_missing():
            log(f"building the control plane ({BUILD_SCRIPT}); the first build takes many minutes")
            subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=sys.stderr)
            binaries = Binaries.from_cache(self.kubernetes_version)
            self.node = RealNode(self.state_dir)
        if missing := binaries.missing() + (self.node.binaries.missing() if self.real_node else []):
            raise ClusterError(f"build finished but these binaries are missing: {', '.join(map(str, missing))}")
        return binaries

    def _reset_state_dir(self) -> None:
        for entry in ("etcd", "pki", "kubeconfigs", "logs", "pids"):
            shutil.rmtree(self.state_dir / entry, ignore_errors=True)
        for leftover in self.state_dir.glob("audit*.log"):
            leftover.unlink()
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def _write_kubeconfigs(self, files: ComponentFiles, ports: Ports) -> None:
        for component, identity in COMPONENT_IDENTITIES.items():
            path = files.kubeconfig(component)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_kubeconfig(files.pki, identity, ports.apiserver))
        shutil.copyfile(files.kubeconfig("admin"), self.kubeconfig)

    def _wait(self, component: str, deadline: float, ready: Callable[[], bool]) -> None:
        while True:
            started_here = CONTROL_PLANE + REAL_NODE_PROCESSES
            if component in started_here and component not in self.processes.running():
                raise ClusterError(f"{component} exited during start-up; log tail:\n{self._log_tail(component)}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {component}; log tail:\n{self._log_tail(component)}")
            time.sleep(0.2)

    def _log_tail(self, component: str, lines: int = 30) -> str:
        path = self.processes.log_path(component)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    @staticmethod
    def _apiserver_ready(files: ComponentFiles, ports: Ports) -> bool:
        context = ssl.create_default_context(cafile=str(files.pki.ca_cert))
        context.load_cert_chain(files.pki.client_cert(pki.ADMIN), files.pki.client_key(pki.ADMIN))
        return _http_ok(f"https://127.0.0.1:{ports.apiserver}/readyz", context)

    def _autopilot_admission_active(self) -> bool:
        """Whether both policies act: a dry-run pod below the minimum comes back raised, one above the maximum is
        refused (the API server loads new policies a moment after they are created)."""
        probe = json.dumps(autopilot_admission.probe_pod())
        result = self.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=probe, check=False)
        if result.returncode == 0:
            return False
        refused = autopilot_admission.VALIDATING_POLICY in result.stderr
        mutated = self.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                               input=json.dumps(autopilot_admission.probe_pod(over_maximum=False)), check=False)
        return refused and mutated.returncode == 0 and autopilot_admission.probe_was_raised(json.loads(mutated.stdout))

    def _nodes_ready(self) -> bool:
        """Ready, and the node lifecycle controller has lifted its not-ready taint (until then nothing schedules)."""
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        nodes = json.loads(result.stdout)["items"]
        return bool(nodes) and all(_schedulable(node) for node in nodes)

    def _real_node_schedulable(self) -> bool:
        result = self.kubectl("get", "node", node.REAL_NODE_NAME, "-o", "json", check=False)
        return result.returncode == 0 and _schedulable(json.loads(result.stdout))

    def _default_service_account_exists(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0


def _schedulable(node: dict) -> bool:
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    lifecycle_taints = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    return ready and not any(taint["key"] in lifecycle_taints for taint in node["spec"].get("taints", []))


def _kubeconfig(paths: pki.PkiPaths, identity: pki.ClientIdentity, port: int) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "mmft-local",
                "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(paths.ca_cert)},
            }
        ],
        "users": [
            {
                "name": identity.user,
                "user": {
                    "client-certificate": str(paths.client_cert(identity)),
                    "client-key": str(paths.client_key(identity)),
                },
            }
        ],
        "contexts": [{"name": "mmft-local", "context": {"cluster": "mmft-local", "user": identity.user}}],
        "current-context": "mmft-local",
    }
    return json.dumps(config, indent=2)  # JSON is YAML, and every Kubernetes client reads it


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def _python_env() -> dict[str, str]:
    """The provisioner runs `python -m mmft_localcluster...`; make that importable even without `pip install -e`."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env
