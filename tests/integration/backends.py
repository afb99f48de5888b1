"""Which cluster the integration and end-to-end tests run against, chosen by MMFT_TEST_BACKEND.

* ``local`` (default, what CI runs): the local control plane of docs/localcluster.md. The tests start one
  (or reuse ``MMFT_KUBECONFIG``), kwok simulates the pods, and the tests run ``mmft operator`` as a subprocess.
  ``MMFT_TEST_KUBERNETES_VERSION`` picks its control plane: ``previous`` (or its number) for the previous minor
  version of localcluster/versions.env; tests marked ``both_minors`` run there (``make test`` runs them in a second
  pass), the others are skipped.
* ``kind``: the cluster of hack/kind-up.sh, given by ``KUBECONFIG`` (docs/kind.md). The operator is its
  mmft-system Deployment and the workload pods run the real CPU workloads; the tests write inputs into the host
  folders that the pods mount as buckets.

Standard library only: importable, and its errors readable, without a cluster, kubectl or Docker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BACKEND_ENV = "MMFT_TEST_BACKEND"
LOCAL, KIND = "local", "kind"
REUSED_LOCAL_KUBECONFIG_ENV = "MMFT_KUBECONFIG"
KUBERNETES_VERSION_ENV = "MMFT_TEST_KUBERNETES_VERSION"
KIND_BUCKETS_DIR_ENV = "MMFT_KIND_BUCKETS_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
# hack/kind-up.sh creates it and deploy/kind/cluster.yaml mounts it on the workers.
DEFAULT_KIND_BUCKETS_DIR = REPO_ROOT / ".state" / "kind" / "buckets"
# The bucket folder hack/kind-up.sh creates unless MMFT_KIND_BUCKETS names others.
KIND_BUCKET = "mmft-kind"


class BackendError(RuntimeError):
    """The environment does not describe a usable test cluster; the message says what to set."""


@dataclass(frozen=True)
class Backend:
    name: str
    # An existing cluster to use and leave running; None: the tests start (and stop) a local control plane.
    kubeconfig: Path | None
    # kwok writes the pods' statuses and no container runs (kwok.mmft.io/* annotations choose the outcome).
    simulated_pods: bool
    # True: the operator is the mmft-system Deployment of the cluster; False: tests start `mmft operator` themselves.
    operator_in_cluster: bool
    # kind: the host folder whose subfolders the pods mount as buckets (bucket_root/<bucket> at the bucket mountPath).
    bucket_root: Path | None = None
    # The local control plane's version as LocalCluster takes it ("previous", "1.36", ...); None: the newest.
    kubernetes_version: str | None = None

    def bucket_dir(self, bucket: str) -> Path:
        """The host folder holding `bucket`, as the workload pods see it through their bucket mount."""
        if self.bucket_root is None:
            raise BackendError(f"the {self.name} backend mounts no bucket: its pods never run")
        folder = self.bucket_root / bucket
        if not folder.is_dir():
            raise BackendError(
                f"bucket folder {folder} is missing: run MMFT_KIND_BUCKETS='{bucket}' hack/kind-up.sh "
                "(it creates the folder writable for the pods' uid and restarts the GCS emulator to serve it)"
            )
        return folder


def select_backend(environ: Mapping[str, str] | None = None) -> Backend:
    environ = os.environ if environ is None else environ
    name = environ.get(BACKEND_ENV, "").strip() or LOCAL
    if name == LOCAL:
        reused = environ.get(REUSED_LOCAL_KUBECONFIG_ENV)
        version = environ.get(KUBERNETES_VERSION_ENV, "").strip() or None
        if reused and version:
            raise BackendError(
                f"{KUBERNETES_VERSION_ENV} chooses the version of a cluster the tests start; with "
                f"{REUSED_LOCAL_KUBECONFIG_ENV} they reuse a running one: unset one of them"
            )
        return Backend(
            LOCAL,
            Path(reused) if reused else None,
            simulated_pods=True,
            operator_in_cluster=False,
            kubernetes_version=version,
        )
    if environ.get(KUBERNETES_VERSION_ENV, "").strip():
        raise BackendError(f"{KUBERNETES_VERSION_ENV} applies to the local backend only, not {name!r}")
    if name == KIND:
        return Backend(
            KIND,
            _kind_kubeconfig(environ),
            simulated_pods=False,
            operator_in_cluster=True,
            bucket_root=_kind_buckets_dir(environ),
        )
    raise BackendError(f"{BACKEND_ENV}={name!r} is not a test backend; use {LOCAL!r} (the default) or {KIND!r}")


def _kind_kubeconfig(environ: Mapping[str, str]) -> Path:
    value = environ.get("KUBECONFIG", "").strip()
    if not value:
        raise BackendError(
            f"{BACKEND_ENV}=kind needs KUBECONFIG, the kind cluster's kubeconfig: run hack/kind-up.sh, then "
            "export KUBECONFIG=.state/kind/kubeconfig (the tests never create a kind cluster themselves)"
        )
    if os.pathsep in value:
        raise BackendError(
            f"KUBECONFIG={value!r} lists several files; {BACKEND_ENV}=kind needs the kind cluster's one "
            "(kind export kubeconfig --name mmft --kubeconfig FILE writes it)"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise BackendError(f"KUBECONFIG={value!r} is not a file: run hack/kind-up.sh, which writes it")
    return path


def _kind_buckets_dir(environ: Mapping[str, str]) -> Path:
    folder = Path(environ.get(KIND_BUCKETS_DIR_ENV) or DEFAULT_KIND_BUCKETS_DIR).expanduser()
    if not folder.is_dir():
        raise BackendError(
            f"{folder} is missing: hack/kind-up.sh creates it and deploy/kind/cluster.yaml mounts it on the "
            f"workers as /mnt/buckets; set {KIND_BUCKETS_DIR_ENV} if the cluster was created from another checkout"
        )
    return folder
