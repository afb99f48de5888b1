"""Operator-wide settings: images and policies an installation chooses, not each resource.

Read from the environment once, at start-up, by the entry point; builders receive the object and never read the
environment themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

ENV_PREFIX = "MMFT_"


@dataclass(frozen=True)
class OperatorSettings:
    # The workload image runs `mmft dataprep|train|evaluate`; pinned, never latest.
    workload_image: str = "us-docker.pkg.dev/mmft-project/mmft/mmft-workload:0.1.0"
    # The Dockerfile's `tensorboard` target: TensorBoard alone, on the workload image's base, as uid 1000.
    tensorboard_image: str = "us-docker.pkg.dev/mmft-project/mmft/mmft-tensorboard:0.1.0"
    # Non-root user of the workload image; also handed to gcsfuse so files on the mount belong to it.
    run_as_user: int = 1000
    run_as_group: int = 1000
    gcsfuse_sidecar_cpu: str = "2"
    gcsfuse_sidecar_memory: str = "4Gi"
    # 5Gi (the driver's default): general-purpose Autopilot pods may ask 10Gi in all, this included.
    gcsfuse_sidecar_ephemeral_storage: str = "5Gi"
    # A pod that stays unschedulable this long marks its resource Stalled (Autopilot needs minutes to add a GPU node).
    unschedulable_grace_seconds: int = 900
    rendezvous_port: int = 29500
    tensorboard_port: int = 6006
    # Prometheus metrics of the operator itself; 0 turns the endpoint off.
    metrics_port: int = 9090
    # Comma-separated namespaces the operator watches; empty: the whole cluster. Set by `mmft operator -n`.
    namespaces: str = ""
    # Namespace of the leader Lease; empty: no leader election (a single local process). The deployment sets it.
    lease_namespace: str = ""
    lease_duration_seconds: int = 15
    # How pods mount a bucket: `gcsfuse` (GKE's Cloud Storage FUSE CSI driver), or `hostPath:DIR` on clusters without
    # it (kind): DIR/<bucket name> on the node stands in for the bucket.
    bucket_volume: str = "gcsfuse"
    # Set STORAGE_EMULATOR_HOST in workload pods (a GCS emulator stands in for Cloud Storage, e.g. on kind).
    storage_emulator_host: str = ""

    def __post_init__(self) -> None:
        if self.bucket_volume != "gcsfuse" and not self.bucket_volume.startswith("hostPath:/"):
            raise ValueError(
                f"{ENV_PREFIX}BUCKET_VOLUME={self.bucket_volume!r}: use 'gcsfuse' or 'hostPath:/absolute/dir'"
            )

    @property
    def bucket_host_dir(self) -> str | None:
        return self.bucket_volume.removeprefix("hostPath:") if self.bucket_volume != "gcsfuse" else None

    def watch_namespaces(self) -> list[str]:
        return [name for name in self.namespaces.split(",") if name]

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        environ = os.environ if environ is None else environ
        overrides = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                overrides[field.name] = int(raw) if field.type in (int, "int") else raw
        return replace(cls(), **overrides)
