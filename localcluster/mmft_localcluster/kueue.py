"""Kueue's controller manager (built by localcluster/build-kueue.sh) against the local control plane. See docs/kueue.md.

Its admission webhooks stay unregistered: the API server could not reach them (no pod network), and what matters
here, Jobs with a queue name created suspended, the operator already does itself. The webhook server still starts,
on loopback with a certificate of the cluster's CA, because the manager reports ready only once it serves.

With Kueue's internal certificate management off, the manager reads its metrics certificate from a fixed path,
/etc/kueue/metrics/certs. Rather than write into the machine's /etc, it runs in its own user and mount namespaces
(util-linux `unshare`) where an overlay over /etc adds that one folder.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mmft_localcluster.cluster import _free_ports, _http_ok
from mmft_localcluster.crds import wait_established
from mmft_localcluster.paths import cache_root, go_version, kubectl_path, read_versions

NAMESPACE = "kueue-system"
# A client certificate of its own, so the audit log tells Kueue's calls apart from the operator's and the tests'.
USER = "mmft-kueue-manager"
METRICS_CERT_DIR = "/etc/kueue/metrics/certs"
# Runs as the namespaces' root: mounts a tmpfs (an overlay's upper layer may not be on every filesystem, e.g. not on
# another overlay) holding the metrics certificate, lays it over /etc, then becomes the manager.
_ETC_OVERLAY_SCRIPT = """\
set -eu
scratch=$1 certs=$2
shift 2
mount -t tmpfs kueue-etc "$scratch"
mkdir -p "$scratch/upper/kueue/metrics" "$scratch/work"
cp -R "$certs" "$scratch/upper/kueue/metrics/certs"
mount -t overlay kueue-etc -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
exec "$@"
"""


class KueueError(RuntimeError):
    pass


@dataclass(frozen=True)
class KueueBuild:
    """The manager binary and the CRDs of the release named by KUEUE_VERSION, in the build cache."""

    directory: Path

    @classmethod
    def from_cache(cls) -> KueueBuild:
        return cls(cache_root() / f"kueue-{read_versions()['KUEUE_VERSION']}-{go_version()}")

    @property
    def binary(self) -> Path:
        return self.directory / "kueue"

    @property
    def crd_dir(self) -> Path:
        return self.directory / "crds"

    def is_built(self) -> bool:
        return self.binary.is_file() and any(self.crd_dir.glob("*.yaml"))


class KueueManager:
    """Installs Kueue's CRDs into the cluster of ``state_dir`` (an `mmft cluster` state directory) and runs the
    manager with only the batch/job integration. Log: ``<state>/logs/kueue.log``; a pid file in ``<state>/pids``
    lets `mmft cluster down` stop it too."""

    def __init__(self, state_dir: Path, build: KueueBuild | None = None):
        self.state_dir = Path(state_dir)
        self.build = build or KueueBuild.from_cache()
        self.work_dir = self.state_dir / "kueue"
        self.log_path = self.state_dir / "logs" / "kueue.log"
        self.pid_file = self.state_dir / "pids" / "kueue.pid"
        self.process: subprocess.Popen | None = None
        self.health_port = 0

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def start(self, timeout: float = 120.0) -> KueueManager:
        if not self.build.is_built():
            raise KueueError(f"Kueue is not built in {self.build.directory}: run localcluster/build-kueue.sh")
        if shutil.which("unshare") is None:
            raise KueueError("the unshare command (util-linux) is needed to run the Kueue manager")
        self.install_crds()
        self._kubectl("create", "namespace", NAMESPACE, check=False)  # already there when started before
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "etc-overlay").mkdir(exist_ok=True)
        certs = self.work_dir / "serving-certs"
        kubeconfig = self.work_dir / "kubeconfig"
        _write_certificates(self.state_dir / "pki", certs, self.work_dir / "client")
        kubeconfig.write_text(self._kubeconfig(self.work_dir / "client"))
        self.health_port, webhook_port = _free_ports(2)
        config = self.work_dir / "config.yaml"
        config.write_text(json.dumps(_configuration(self.health_port, webhook_port, certs), indent=2))
        argv = [
            "unshare", "--user", "--map-root-user", "--mount", "--",
            "sh", "-c", _ETC_OVERLAY_SCRIPT, "kueue-etc-overlay", str(self.work_dir / "etc-overlay"), str(certs),
            str(self.build.binary), f"--config={config}",
        ]  # fmt: skip
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                start_new_session=True,
            )
        # ProcessTable's format (pid, then a word of the final command line), so `mmft cluster down` stops it.
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{self.process.pid}\n{self.build.binary}\n")
        self._wait_ready(time.monotonic() + timeout)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_file.unlink(missing_ok=True)

    def install_crds(self) -> None:
        """Server-side apply: the Workload CRD is too large for the last-applied annotation of a client-side one."""
        crds = str(self.build.crd_dir)
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
        wait_established(self.admin_kubeconfig, "-f", crds)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, deadline: float) -> None:
        while not _http_ok(f"http://127.0.0.1:{self.health_port}/readyz"):
            if self.process.poll() is not None:
                self.stop()
                raise KueueError(
                    f"the Kueue manager exited with {self.process.returncode} (it runs in its own user and mount "
                    f"namespaces, which the kernel must allow; docs/kueue.md):\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise KueueError(f"the Kueue manager was not ready in time:\n{self.log_tail()}")
            time.sleep(0.2)

    def _kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(kubectl_path()), f"--kubeconfig={self.admin_kubeconfig}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise KueueError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def _kubeconfig(self, client_dir: Path) -> str:
        """The admin kubeconfig's server and CA, with Kueue's own client certificate."""
        config = json.loads(self.admin_kubeconfig.read_text())
        config["users"] = [
            {
                "name": USER,
                "user": {"client-certificate": str(client_dir / "tls.crt"), "client-key": str(client_dir / "tls.key")},
            }
        ]
        for context in config["contexts"]:
            context["context"]["user"] = USER
        return json.dumps(config, indent=2)


def _configuration(health_port: int, webhook_port: int, cert_dir: Path) -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "integrations": {"frameworks": ["batch/job"]},
        # The visibility API is an aggregated API server: it would need an APIService the API server can reach.
        "featureGates": {"VisibilityOnDemand": False},
    }


def _write_certificates(pki_dir: Path, serving_dir: Path, client_dir: Path) -> None:
    """A serving certificate (webhook and metrics servers, loopback only) and Kueue's client certificate, both
    signed by the cluster CA. The client is in system:masters like the simulated parts: Kueue's RBAC is not what
    these tests are about."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    def issue(directory: Path, names: list, usage, extensions=()) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(names))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        directory.mkdir(parents=True, exist_ok=True)
        key_path = directory / "tls.key"
        key_path.touch(mode=0o600, exist_ok=True)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        certificate = builder.sign(ca_key, hashes.SHA256())
        (directory / "tls.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    loopback = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    issue(serving_dir, [x509.NameAttribute(NameOID.COMMON_NAME, "kueue")], ExtendedKeyUsageOID.SERVER_AUTH, [loopback])
    masters = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")
    issue(client_dir, [masters, x509.NameAttribute(NameOID.COMMON_NAME, USER)], ExtendedKeyUsageOID.CLIENT_AUTH)
