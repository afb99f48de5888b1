"""Command lines of the control-plane components, kept apart from the start-up sequence that runs them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from mmft_localcluster.gke_nodes import KWOK_NODE_SELECTOR
from mmft_localcluster.paths import STAGES_DIR, Binaries
from mmft_localcluster.pki import APISERVER_KUBELET_CLIENT, PkiPaths

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
# Pod IPs that kwok writes into pod status; nothing listens on them, they only need to be unique.
POD_CIDR = "10.64.0.0/12"
# Like GKE: PodSecurity and ExtendedResourceToleration on top of the default admission plugins.
# PodNodeSelector and PodTolerationRestriction act only on namespaces annotated for them: that is how a namespace
# opts in to the real node (node.REAL_NODE_NAMESPACE_ANNOTATIONS).
ADMISSION_PLUGINS = "NodeRestriction,PodSecurity,ExtendedResourceToleration,PodNodeSelector,PodTolerationRestriction"

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    # The real node's (0 without one).
    kubelet: int = 0
    kube_proxy_healthz: int = 0
    kube_proxy_metrics: int = 0


@dataclass(frozen=True)
class ComponentFiles:
    state_dir: Path
    pki: PkiPaths

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    def kubeconfig(self, component: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{component}.kubeconfig"


def etcd_command(binaries: Binaries, files: ComponentFiles, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binaries.etcd),
        "--name=mmft-local",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=mmft-local={peer}",
        # A throwaway single-member cluster on one disk: durability of each write buys nothing here.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_command(binaries: Binaries, files: ComponentFiles, ports: Ports, real_node_ip: str | None) -> list[str]:
    pki = files.pki
    if real_node_ip:
        # Pods of the real node reach the API server through the `kubernetes` Service, whose endpoint is the node's
        # bridge address; the API server dials kubelets at their InternalIP (node names do not resolve here).
        network = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={real_node_ip}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki.client_cert(APISERVER_KUBELET_CLIENT)}",
            f"--kubelet-client-key={pki.client_key(APISERVER_KUBELET_CLIENT)}",
        ]
    else:
        # The `kubernetes` Service would point at 127.0.0.1, which Endpoints validation rejects; nothing in the
        # simulated cluster reaches the apiserver through that Service.
        network = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    return [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        *network,
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        "--allow-privileged=true",
        f"--audit-policy-file={files.audit_policy}",
        f"--audit-log-path={files.audit_log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=3",
        "--profiling=false",
    ]


def controller_manager_command(binaries: Binaries, files: ComponentFiles) -> list[str]:
    pki = files.pki
    return [
        str(binaries.kube_controller_manager),
        f"--kubeconfig={files.kubeconfig('controller-manager')}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--cluster-signing-cert-file={pki.ca_cert}",
        f"--cluster-signing-key-file={pki.ca_key}",
        "--cluster-name=mmft-local",
        "--profiling=false",
    ]


def scheduler_command(binaries: Binaries, files: ComponentFiles) -> list[str]:
    return [
        str(binaries.kube_scheduler),
        f"--kubeconfig={files.kubeconfig('scheduler')}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok_command(binaries: Binaries, files: ComponentFiles) -> list[str]:
    return [
        str(binaries.kwok),
        f"--kubeconfig={files.kubeconfig('kwok')}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_SELECTOR}",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
        f"--config={STAGES_DIR / 'nodes.yaml'}",
        f"--config={STAGES_DIR / 'pods.yaml'}",
    ]


def provisioner_command(files: ComponentFiles, real_node_volumes: Path | None) -> list[str]:
    command = [sys.executable, "-m", "mmft_localcluster.provisioner", f"--kubeconfig={files.kubeconfig('provisioner')}"]
    if real_node_volumes is not None:
        command.append(f"--real-node-volumes-dir={real_node_volumes}")
    return command


def volume_simulator_command(files: ComponentFiles, gcs_emulator: str | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mmft_localcluster.volume_simulator",
        f"--kubeconfig={files.kubeconfig('volume-simulator')}",
    ]
    if gcs_emulator:
        command.append(f"--gcs-emulator={gcs_emulator}")
    return command
