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
    # How long a finished FineTuneJob's TensorBoard keeps running when its spec does not say
    # (spec.tensorboard.ttlSecondsAfterFinished); about 3.4 USD a day on Autopilot (docs/tensorboard.md).
    tensorboard_ttl_seconds_after_finished: int = 24 * 3600
    # How long a finished workload Job and its pods (their logs) are kept, by outcome; the operator sets the Job's
    # ttlSecondsAfterFinished once status records the outcome. spec.ttlSecondsAfterFinished overrides both.
    # A failed run's logs are what its owner needs next, so they stay longer.
    succeeded_job_ttl_seconds: int = 24 * 3600
    failed_job_ttl_seconds: int = 7 * 24 * 3600
    # A pod refused at creation (PodRejected) or unable to mount its volumes (VolumeMountFailed) this long marks its
    # resource Stalled. Both can clear by themselves: a quota frees up, a policy is fixed, and a ReadWriteOnce disk
    # still attached to a deleted pod's node is force-detached after 6 minutes; the kubelet retries mounts with a
    # backoff of up to about 2 minutes. 10 minutes covers one force-detach and the mount retry after it.
    start_failure_grace_seconds: int = 600
    # Warn (condition WorkloadIdentity) when a resource's ServiceAccount lacks the iam.gke.io/gcp-service-account
    # annotation. Applies only where pods mount buckets with GKE's Cloud Storage FUSE driver (bucket_volume gcsfuse);
    # turn it off where IAM grants roles to the Kubernetes ServiceAccounts directly.
    workload_identity_check: bool = True
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
        for name in ("succeeded_job_ttl_seconds", "failed_job_ttl_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}={getattr(self, name)}: use 0 or more seconds")
        if self.bucket_volume != "gcsfuse" and not self.bucket_volume.startswith("hostPath:/"):
            raise ValueError(
                f"{ENV_PREFIX}BUCKET_VOLUME={self.bucket_volume!r}: use 'gcsfuse' or 'hostPath:/absolute/dir'"
            )

    @property
    def bucket_host_dir(self) -> str | None:
        return self.bucket_volume.removeprefix("hostPath:") if self.bucket_volume != "gcsfuse" else None

    @property
    def checks_workload_identity(self) -> bool:
        return self.workload_identity_check and self.bucket_volume == "gcsfuse"

    def watch_namespaces(self) -> list[str]:
        return [name for name in self.namespaces.split(",") if name]

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        environ = os.environ if environ is None else environ
        overrides = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                overrides[field.name] = _parse(field.name, field.type, raw)
        return replace(cls(), **overrides)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(name: str, type_: object, raw: str) -> int | bool | str:
    if type_ in (int, "int"):
        return int(raw)
    if type_ in (bool, "bool"):
        if raw.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: use true or false")
        return raw.lower() in _TRUE
    return raw
