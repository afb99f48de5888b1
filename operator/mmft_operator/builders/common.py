"""Pieces every workload pod shares: ownership, labels, GCS Fuse, the restricted security context, reporting."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from mmft_operator import gke, naming
from mmft_operator.api.common import API_VERSION, GcsBucket, PodMetadata
from mmft_operator.api.pod_hatches import PodHatches, PodScheduling
from mmft_operator.contracts import progress
from mmft_operator.settings import OperatorSettings

GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
GCSFUSE_VOLUME = "gcs"
SHM_VOLUME = "dshm"


@dataclass(frozen=True)
class Owner:
    """The mmft resource whose children are being built."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def metadata(owner: Owner, name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": naming.labels(owner.kind, owner.name, component),
        "ownerReferences": [owner.reference()],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def with_spec_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp a hash of everything but the stamp itself, so an unchanged child is never patched."""
    body = json.dumps({k: v for k, v in obj.items() if k != "status"}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    obj["metadata"].setdefault("annotations", {})[naming.SPEC_HASH_ANNOTATION] = digest
    return obj


def gcsfuse_volume(bucket: GcsBucket, settings: OperatorSettings, read_only: bool = False) -> dict[str, Any]:
    if settings.bucket_host_dir:
        return {
            "name": GCSFUSE_VOLUME,
            "hostPath": {"path": f"{settings.bucket_host_dir}/{bucket.name}", "type": "DirectoryOrCreate"},
        }
    options = list(bucket.mount_options)
    # Non-root pods only see their files on the mount when gcsfuse maps ownership to their uid/gid.
    for key, value in (("uid", settings.run_as_user), ("gid", settings.run_as_group)):
        if not any(option.startswith(f"{key}=") for option in options):
            options.append(f"{key}={value}")
    return {
        "name": GCSFUSE_VOLUME,
        "csi": {
            "driver": GCSFUSE_DRIVER,
            "readOnly": read_only,
            "volumeAttributes": {"bucketName": bucket.name, "mountOptions": ",".join(options)},
        },
    }


def gcsfuse_mount(bucket: GcsBucket, read_only: bool = False) -> dict[str, Any]:
    return {"name": GCSFUSE_VOLUME, "mountPath": bucket.mount_path, "readOnly": read_only}


def pod_annotations(bucket: GcsBucket, pod_metadata: PodMetadata, settings: OperatorSettings) -> dict[str, str]:
    sidecar = {
        "cpu": bucket.sidecar_cpu or settings.gcsfuse_sidecar_cpu,
        "memory": bucket.sidecar_memory or settings.gcsfuse_sidecar_memory,
        "ephemeral-storage": bucket.sidecar_ephemeral_storage or settings.gcsfuse_sidecar_ephemeral_storage,
    }
    annotations = dict(pod_metadata.annotations)
    if settings.bucket_host_dir:
        return annotations
    annotations["gke-gcsfuse/volumes"] = "true"
    for resource, quantity in sidecar.items():
        annotations[f"gke-gcsfuse/{resource}-limit"] = str(quantity)
        annotations[f"gke-gcsfuse/{resource}-request"] = str(quantity)
    return annotations


def pod_labels(owner: Owner, component: str, pod_metadata: PodMetadata) -> dict[str, str]:
    return {**pod_metadata.labels, **naming.labels(owner.kind, owner.name, component)}


def pod_security_context(settings: OperatorSettings) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "fsGroup": settings.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def gpu_tolerations(provisioning: str, gpu: bool = True) -> list[dict[str, str]]:
    # Autopilot adds these itself; GKE Standard and other clusters with tainted GPU/Spot pools need them spelled out.
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}] if gpu else []
    return tolerations + gke.provisioning_tolerations(provisioning)


def node_selector(provisioning: str, accelerator: str | None = None) -> dict[str, str]:
    """The operator's node selector: the GPU card, if the pod has GPUs (without: any general-purpose node), and the
    provisioning model."""
    selector = {gke.ACCELERATOR_LABEL: accelerator} if accelerator else {}
    return {**selector, **gke.PROVISIONING_NODE_SELECTOR[provisioning]}


def apply_scheduling(pod_spec: dict[str, Any], scheduling: PodScheduling | None) -> None:
    """Add the user's scheduling to the operator's: the API refuses the node selector keys the operator sets, so a
    merge never replaces one of them; tolerations are added after the operator's."""
    if scheduling is None:
        return
    if scheduling.node_selector:
        pod_spec["nodeSelector"] = {**scheduling.node_selector, **pod_spec.get("nodeSelector", {})}
    if scheduling.tolerations:
        tolerations = [toleration.to_wire() for toleration in scheduling.tolerations]
        pod_spec["tolerations"] = [*pod_spec.get("tolerations", []), *tolerations]
    if scheduling.affinity is not None:
        pod_spec["affinity"] = scheduling.affinity.to_wire()
    if scheduling.priority_class_name:
        pod_spec["priorityClassName"] = scheduling.priority_class_name


def apply_hatches(pod_spec: dict[str, Any], container: dict[str, Any], hatches: PodHatches) -> None:
    """The spec's escape hatches on a workload pod and its main container. The API keeps them off the operator's
    names and paths; the operator's env entries come first and so win over envFrom (Kubernetes' precedence)."""
    apply_scheduling(pod_spec, hatches.scheduling)
    if hatches.env:
        container["env"] = [*container.get("env", []), *(variable.to_wire() for variable in hatches.env)]
    if hatches.env_from:
        container["envFrom"] = [source.to_wire() for source in hatches.env_from]
    if hatches.extra_volumes:
        container["volumeMounts"] = [*container.get("volumeMounts", []), *(v.mount() for v in hatches.extra_volumes)]
        pod_spec["volumes"] = [*pod_spec.get("volumes", []), *(v.volume() for v in hatches.extra_volumes)]


def shm_volume(size_limit: str) -> dict[str, Any]:
    # PyTorch data-loader workers pass batches through /dev/shm; the container default of 64 MiB is far too small.
    return {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size_limit}}


def shm_size_for(memory: str) -> str:
    """A quarter of the pod's memory: memory-backed /dev/shm counts against it."""
    if memory.endswith("Gi") and memory[:-2].isdigit():
        return f"{max(1, int(memory[:-2]) // 4)}Gi"
    return "8Gi"


def shm_mount() -> dict[str, Any]:
    return {"name": SHM_VOLUME, "mountPath": "/dev/shm"}


_JOB_UID_FIELD = f"metadata.labels['{naming.JOB_CONTROLLER_UID_LABEL}']"


def workload_env(owner: Owner, report_file: str, settings: OperatorSettings) -> list[dict[str, Any]]:
    env = [
        {"name": progress.ENV_REPORT_FILE, "value": report_file},
        {"name": progress.ENV_REPORT_CONFIGMAP, "value": naming.report_config_map(owner.kind, owner.name)},
        {"name": progress.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": progress.ENV_JOB_UID, "valueFrom": {"fieldRef": {"fieldPath": _JOB_UID_FIELD}}},
    ]
    if settings.storage_emulator_host:
        env.append({"name": "STORAGE_EMULATOR_HOST", "value": settings.storage_emulator_host})
    return env


def hf_token_env(secret_ref) -> list[dict[str, Any]]:  # noqa: ANN001 - SecretKeySelector | None
    if secret_ref is None:
        return []
    return [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": secret_ref.name, "key": secret_ref.key}},
        }
    ]


def build_report_config_map(owner: Owner, component: str) -> dict[str, Any]:
    """Empty at creation; the workload fills it. The operator never overwrites `data` once created."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            owner, naming.report_config_map(owner.kind, owner.name), component, {naming.CREATE_ONLY_ANNOTATION: "true"}
        ),
    }


def build_report_role(owner: Owner, component: str) -> dict[str, Any]:
    """The only API right a workload pod gets: read and patch its own report ConfigMap."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(owner, naming.report_role(owner.kind, owner.name), component),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [naming.report_config_map(owner.kind, owner.name)],
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_report_role_binding(owner: Owner, component: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(owner, naming.report_role(owner.kind, owner.name), component),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": naming.report_role(owner.kind, owner.name),
        },
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": owner.namespace}],
    }


# Ephemeral storage of a workload pod without a GPU that names none: a general-purpose Autopilot pod may ask 10Gi in
# all, the FUSE sidecar's share included (mmft_operator.autopilot_rules).
NO_GPU_EPHEMERAL_STORAGE = "4Gi"


# Room beside the model downloads on a pod's own disk: TensorBoard events, the report, torch's compile cache, the
# evaluation's fetched images.
SCRATCH_HEADROOM_GIB = 10


def scratch_gib(download_gib: float) -> int:
    """Ephemeral storage for models of ``download_gib`` downloaded onto the pod's own disk, with the headroom beside
    them. On Autopilot the request is also the limit: a pod that writes more is evicted."""
    return math.ceil(download_gib) + SCRATCH_HEADROOM_GIB


def resource_requests(cpu: str, memory: str, ephemeral_storage: str) -> dict[str, str]:
    return {"cpu": str(cpu), "memory": str(memory), "ephemeral-storage": str(ephemeral_storage)}
