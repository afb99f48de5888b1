"""What users may add to the pods the operator renders (GKE's escape hatches), fenced off from what the operator owns.

Scheduling (tolerations, affinity, priority class, extra node selectors such as a compute class or a reservation),
environment variables from Secrets and ConfigMaps, and extra volumes mounted into the workload container. Each
thing the operator sets itself is reserved: the API server refuses it with a message naming the field to use
instead (CEL rules generated from the tables below), and pydantic refuses the same for `mmft render`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from mmft_operator.contracts import progress
from mmft_operator.gke import OPERATOR_NODE_SELECTOR_KEYS

from .common import DNS_SUBDOMAIN_PATTERN, ApiModel, Quantity, cel, validations

# Environment variables the builders set (contracts with the workloads, the operator's tuning, credentials):
# name -> where it comes from. A user's value would silently replace the operator's.
OPERATOR_ENV_NAMES: dict[str, str] = {
    progress.ENV_REPORT_FILE: "the operator (progress report contract)",
    progress.ENV_REPORT_CONFIGMAP: "the operator (progress report contract)",
    progress.ENV_NAMESPACE: "the operator (progress report contract)",
    "STORAGE_EMULATOR_HOST": "the operator's settings",
    "HF_TOKEN": "spec.huggingFaceTokenSecretRef",
    "HF_HOME": "the operator (model cache)",
    "AXOLOTL_DO_NOT_TRACK": "the operator",
    "PYTORCH_CUDA_ALLOC_CONF": "the operator",
    "NCCL_DEBUG": "the operator",
    "TORCHINDUCTOR_CACHE_DIR": "spec.scoring.compileCachePath",
    "WANDB_API_KEY": "spec.tracking.wandb.apiKeySecretRef",
    "WANDB_BASE_URL": "spec.tracking.wandb.baseUrl",
    "WANDB_PROJECT": "spec.tracking.wandb.project",
    "WANDB_ENTITY": "spec.tracking.wandb.entity",
    "WANDB_NAME": "spec.tracking.wandb.runName",
    "MLFLOW_TRACKING_URI": "spec.tracking.mlflow.trackingUri",
    "MLFLOW_EXPERIMENT_NAME": "spec.tracking.mlflow.experimentName",
    "MLFLOW_RUN_NAME": "spec.tracking.mlflow.runName",
    "MLFLOW_TRACKING_TOKEN": "spec.tracking.mlflow.tokenSecretRef",
    "MLFLOW_TRACKING_USERNAME": "spec.tracking.mlflow.usernameSecretRef",
    "MLFLOW_TRACKING_PASSWORD": "spec.tracking.mlflow.passwordSecretRef",
}
# The operator's own namespace of variables (the report contract and whatever it adds later).
OPERATOR_ENV_PREFIX = "MMFT_"

# Volumes of the workload pods (builders/common.py, workload_job.py, finetunejob.py): name -> what it holds.
OPERATOR_VOLUMES: dict[str, str] = {
    "gcs": "the bucket (spec.bucket)",
    "scratch": "the workload's scratch directory",
    "dshm": "shared memory for data loaders",
    "config": "the rendered Axolotl config",
    "output": "the output volume (checkpoints)",
}
# Where the operator mounts them (the bucket's own mount path, spec.bucket.mountPath, is checked at spec level):
# path -> what is there. A user mount at, under or above one of them would hide it.
OPERATOR_MOUNT_PATHS: dict[str, str] = {
    "/scratch": "the workload's scratch directory",
    "/dev/shm": "shared memory for data loaders",
    "/etc/mmft": "the rendered Axolotl config",
    "/outputs": "the output volume (checkpoints)",
}

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Absolute, no trailing slash, no empty segment; "." and ".." segments are refused by a rule below.
MOUNT_PATH_PATTERN = r"^(/[^/\x00]+)+$"
_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
_LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
MAX_EXTRA_VOLUMES = 16


def _overlaps(path: str, reserved: str) -> bool:
    """True when mounting at `path` would hide `reserved` or land inside it."""
    return path == reserved or path.startswith(reserved + "/") or reserved.startswith(path + "/")


def _overlap_rule(path_expr: str, reserved_expr: str) -> str:
    return (
        f"{path_expr} != {reserved_expr} && !{path_expr}.startsWith({reserved_expr} + '/') "
        f"&& !{reserved_expr}.startsWith({path_expr} + '/')"
    )


# ---- scheduling -------------------------------------------------------------------------------------------------


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.operator != 'Exists' || !has(self.value)",
                "a toleration with operator Exists takes no value",
                field_path=".value",
            ),
            cel(
                "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                "tolerationSeconds goes with effect NoExecute",
                field_path=".tolerationSeconds",
            ),
        )
    }

    key: str | None = Field(None, description="Taint key; empty with operator Exists tolerates every taint.",
                            max_length=317, pattern=_LABEL_KEY_PATTERN)
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal (to value).")
    value: str | None = Field(None, description="Taint value for operator Equal.", max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="How long a NoExecute taint is tolerated once added (seconds).", ge=0
    )


class Affinity(ApiModel):
    """Pod affinity as in core/v1 Affinity. Checked in full by the API server when the operator creates the pod's
    Job (a mistake shows as reason PodRejected); the operator's own node selectors still apply on top."""

    node_affinity: dict[str, Any] | None = Field(
        None,
        description="core/v1 NodeAffinity, e.g. requiredDuringSchedulingIgnoredDuringExecution over zones.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    pod_affinity: dict[str, Any] | None = Field(
        None,
        description="core/v1 PodAffinity.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    pod_anti_affinity: dict[str, Any] | None = Field(
        None,
        description="core/v1 PodAntiAffinity.",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )


def _node_selector_schema(schema: dict[str, Any]) -> None:
    rules = [
        cel(
            f"!('{key}' in self)",
            f"nodeSelector {key} is set by the operator: set spec.{field} instead",
            reason="FieldValueForbidden",
        )
        for key, field in OPERATOR_NODE_SELECTOR_KEYS.items()
    ]
    schema.update(validations(*rules))


class PodScheduling(ApiModel):
    """Where the pods may run, added to what the operator selects (accelerator, provisioning)."""

    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Tolerations added to the operator's own (GPU, Spot, flex-start).",
        max_length=32,
    )
    affinity: Affinity | None = Field(None, description="Node and pod affinity (core/v1 Affinity).")
    priority_class_name: str | None = Field(
        None,
        description="PriorityClass of the pods (Kubernetes' system-* classes are for kube-system only).",
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        json_schema_extra=validations(
            cel(
                "!self.startsWith('system-')",
                "priorityClassName system-* is reserved for kube-system pods; create a PriorityClass of your own",
                reason="FieldValueForbidden",
            )
        ),
    )
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict,
        description="Node labels the pods need besides the operator's, e.g. cloud.google.com/compute-class, or "
        "cloud.google.com/reservation-name with cloud.google.com/reservation-affinity: specific. The keys the "
        "operator sets from spec.compute are refused.",
        max_length=32,
        json_schema_extra=_node_selector_schema,
    )

    @field_validator("node_selector")
    @classmethod
    def _no_operator_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in OPERATOR_NODE_SELECTOR_KEYS:
                raise ValueError(
                    f"nodeSelector {key} is set by the operator: set spec.{OPERATOR_NODE_SELECTOR_KEYS[key]} instead"
                )
        return value

    @field_validator("priority_class_name")
    @classmethod
    def _not_system(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("system-"):
            raise ValueError("priorityClassName system-* is reserved for kube-system pods")
        return value


# ---- environment ------------------------------------------------------------------------------------------------


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap in the same namespace."""

    name: str = Field(description="Name of the Secret or ConfigMap.", min_length=1, max_length=253,
                      pattern=DNS_SUBDOMAIN_PATTERN)
    key: str = Field(description="The key.", min_length=1, max_length=253, pattern=_KEY_PATTERN)
    optional: bool | None = Field(None, description="Start the pod even if the object or key is missing.")


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: a Secret's key or a ConfigMap's key (nothing else)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.secretKeyRef) != has(self.configMapKeyRef)", "set exactly one of secretKeyRef or "
                "configMapKeyRef"),
        )
    }

    secret_key_ref: KeySelector | None = Field(None, description="A key of a Secret in this namespace.")
    config_map_key_ref: KeySelector | None = Field(None, description="A key of a ConfigMap in this namespace.")

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef or configMapKeyRef")
        return self


def _env_name_schema(schema: dict[str, Any]) -> None:
    names = ", ".join(f"'{name}'" for name in OPERATOR_ENV_NAMES)
    schema.update(
        validations(
            cel(
                f"!self.startsWith('{OPERATOR_ENV_PREFIX}')",
                f"env names starting with {OPERATOR_ENV_PREFIX} are the operator's",
                reason="FieldValueForbidden",
            ),
            cel(
                f"!(self in [{names}])",
                "this env name is set by the operator (HF_TOKEN: spec.huggingFaceTokenSecretRef; WANDB_*/MLFLOW_*: "
                "spec.tracking; the others: the operator itself)",
                reason="FieldValueForbidden",
            ),
        )
    )


def check_env_name(name: str) -> str:
    if name.startswith(OPERATOR_ENV_PREFIX):
        raise ValueError(f"env {name}: names starting with {OPERATOR_ENV_PREFIX} are the operator's")
    if name in OPERATOR_ENV_NAMES:
        raise ValueError(f"env {name} is set by {OPERATOR_ENV_NAMES[name]}")
    return name


class EnvVar(ApiModel):
    """An environment variable of the workload container: a plain value, or a Secret's or ConfigMap's key."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.value) != has(self.valueFrom)", "set exactly one of value or valueFrom"),
        )
    }

    name: str = Field(description="Variable name.", max_length=256, pattern=ENV_NAME_PATTERN,
                      json_schema_extra=_env_name_schema)
    value: str | None = Field(
        None, description="A plain value (never a credential: use valueFrom.secretKeyRef).", max_length=32768
    )
    value_from: EnvVarSource | None = Field(None, description="A Secret's or ConfigMap's key.")

    @field_validator("name")
    @classmethod
    def _not_the_operators(cls, value: str) -> str:
        return check_env_name(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError(f"env {self.name}: set exactly one of value or valueFrom")
        return self


class NamedObjectRef(ApiModel):
    """A whole Secret or ConfigMap in the same namespace."""

    name: str = Field(description="Object name.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    optional: bool | None = Field(None, description="Start the pod even if the object is missing.")


class EnvFromSource(ApiModel):
    """Every key of a Secret or ConfigMap as variables. The operator's own variables win over same-named keys."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.secretRef) != has(self.configMapRef)", "set exactly one of secretRef or configMapRef"),
        )
    }

    secret_ref: NamedObjectRef | None = Field(None, description="A Secret in this namespace.")
    config_map_ref: NamedObjectRef | None = Field(None, description="A ConfigMap in this namespace.")
    prefix: str | None = Field(
        None,
        description="Prepended to every key.",
        max_length=64,
        pattern=ENV_NAME_PATTERN,
        json_schema_extra=validations(
            cel(
                f"!self.startsWith('{OPERATOR_ENV_PREFIX}')",
                f"envFrom prefix {OPERATOR_ENV_PREFIX} is the operator's",
                reason="FieldValueForbidden",
            )
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvFromSource:
        if (self.secret_ref is None) == (self.config_map_ref is None):
            raise ValueError("envFrom: set exactly one of secretRef or configMapRef")
        if self.prefix is not None and self.prefix.startswith(OPERATOR_ENV_PREFIX):
            raise ValueError(f"envFrom prefix {OPERATOR_ENV_PREFIX} is the operator's")
        return self


# ---- volumes ----------------------------------------------------------------------------------------------------


def _open_object(description: str) -> Any:
    return Field(None, description=description,
                 json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True})


class KeyToPath(ApiModel):
    """One key of a Secret or ConfigMap projected to a file."""

    key: str = Field(description="The key.", min_length=1, max_length=253, pattern=_KEY_PATTERN)
    path: str = Field(description="Relative file path.", min_length=1, max_length=1024, pattern=r"^[^/\x00][^\x00]*$")


class SecretVolumeSource(ApiModel):
    """A Secret as files."""

    secret_name: str = Field(description="Secret name.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    items: list[KeyToPath] | None = Field(None, description="Only these keys, at these paths.", max_length=64)
    optional: bool | None = Field(None, description="Start the pod even if the Secret is missing.")


class ConfigMapVolumeSource(ApiModel):
    """A ConfigMap as files."""

    name: str = Field(description="ConfigMap name.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    items: list[KeyToPath] | None = Field(None, description="Only these keys, at these paths.", max_length=64)
    optional: bool | None = Field(None, description="Start the pod even if the ConfigMap is missing.")


class EmptyDirVolumeSource(ApiModel):
    """A directory that lives as long as the pod (on the node's ephemeral storage, or in memory)."""

    medium: Literal["", "Memory"] | None = Field(None, description="Empty: node storage; Memory: tmpfs.")
    size_limit: Quantity | None = Field(None, description="Size limit, e.g. 10Gi (counts against the pod's requests).")


class PersistentVolumeClaimVolumeSource(ApiModel):
    """An existing PersistentVolumeClaim in this namespace."""

    claim_name: str = Field(description="Claim name.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    read_only: bool | None = Field(None, description="Mount read-only.")


class CsiVolumeSource(ApiModel):
    """An inline CSI volume, e.g. a second Cloud Storage bucket (driver gcsfuse.csi.storage.gke.io)."""

    driver: str = Field(description="CSI driver name.", min_length=1, max_length=63, pattern=DNS_SUBDOMAIN_PATTERN)
    read_only: bool | None = Field(None, description="Mount read-only.")
    volume_attributes: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        None, description="Driver attributes, e.g. bucketName and mountOptions.", max_length=32
    )


_VOLUME_SOURCES = ("secret", "configMap", "emptyDir", "persistentVolumeClaim", "csi")


def _extra_volume_rules() -> dict[str, Any]:
    sources = ", ".join(f"has(self.{source})" for source in _VOLUME_SOURCES)
    rules = [
        cel(
            "!has(self.hostPath)",
            "hostPath volumes are refused: GKE Autopilot does not allow them; use emptyDir, a Secret, a ConfigMap, "
            "a PersistentVolumeClaim or a CSI volume",
            field_path=".hostPath",
            reason="FieldValueForbidden",
        ),
        cel(
            f"[{sources}].filter(x, x).size() == 1",
            f"set exactly one volume source: {', '.join(_VOLUME_SOURCES)}",
        ),
        cel(
            "!self.mountPath.matches('(^|/)[.][.]?(/|$)')",
            "mountPath may not have . or .. segments",
            field_path=".mountPath",
        ),
    ]
    rules += [
        cel(
            f"!(self.name in [{', '.join(repr(name) for name in OPERATOR_VOLUMES)}])",
            "this volume name is the operator's (gcs, scratch, dshm, config, output): choose another",
            field_path=".name",
            reason="FieldValueForbidden",
        )
    ]
    rules += [
        cel(
            _overlap_rule("self.mountPath", f"'{path}'"),
            f"mountPath overlaps {path}, where the operator mounts {what}",
            field_path=".mountPath",
            reason="FieldValueForbidden",
        )
        for path, what in OPERATOR_MOUNT_PATHS.items()
    ]
    return validations(*rules)


class ExtraVolume(ApiModel):
    """A volume of your own, mounted into the workload container (never over the operator's paths)."""

    model_config = ApiModel.model_config | {"json_schema_extra": _extra_volume_rules()}

    name: str = Field(description="Volume name (unique in the pod).", min_length=1, max_length=63,
                      pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    mount_path: str = Field(description="Where it is mounted in the workload container.", max_length=1024,
                            pattern=MOUNT_PATH_PATTERN)
    read_only: bool = Field(False, description="Mount read-only.")
    secret: SecretVolumeSource | None = Field(None, description="A Secret as files.")
    config_map: ConfigMapVolumeSource | None = Field(None, description="A ConfigMap as files.")
    empty_dir: EmptyDirVolumeSource | None = Field(None, description="A directory that lives as long as the pod.")
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = Field(
        None, description="An existing PersistentVolumeClaim."
    )
    csi: CsiVolumeSource | None = Field(None, description="An inline CSI volume (e.g. another bucket via GCS Fuse).")
    host_path: dict[str, Any] | None = _open_object(
        "Refused: GKE Autopilot does not allow hostPath volumes (declared only to say so)."
    )

    @model_validator(mode="after")
    def _valid(self) -> ExtraVolume:
        where = f"extraVolumes {self.name}"
        if self.host_path is not None:
            raise ValueError(f"{where}: hostPath volumes are refused: GKE Autopilot does not allow them")
        sources = [getattr(self, name) for name in ("secret", "config_map", "empty_dir", "persistent_volume_claim",
                                                     "csi")]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(f"{where}: set exactly one volume source: {', '.join(_VOLUME_SOURCES)}")
        if self.name in OPERATOR_VOLUMES:
            raise ValueError(f"{where}: the name is the operator's ({OPERATOR_VOLUMES[self.name]})")
        if re.search(r"(^|/)\.\.?(/|$)", self.mount_path):
            raise ValueError(f"{where}: mountPath may not have . or .. segments")
        for path, what in OPERATOR_MOUNT_PATHS.items():
            if _overlaps(self.mount_path, path):
                raise ValueError(f"{where}: mountPath overlaps {path}, where the operator mounts {what}")
        return self

    def volume(self) -> dict[str, Any]:
        """The pod's volume entry."""
        wire = self.to_wire()
        return {key: value for key, value in wire.items() if key not in ("mountPath", "readOnly")}

    def mount(self) -> dict[str, Any]:
        mount: dict[str, Any] = {"name": self.name, "mountPath": self.mount_path}
        if self.read_only:
            mount["readOnly"] = True
        return mount


# ---- the block every kind's spec has ---------------------------------------------------------------------------


def pod_hatch_rules() -> list[dict[str, str]]:
    """Spec-level rules: the bucket's mount path (a spec field) is the operator's too; mount paths are unique."""
    return [
        cel(
            "!has(self.extraVolumes) || self.extraVolumes.all(v, "
            + _overlap_rule("v.mountPath", "self.bucket.mountPath")
            + ")",
            "extraVolumes mountPath overlaps spec.bucket.mountPath, where the operator mounts the bucket",
            field_path=".extraVolumes",
            reason="FieldValueForbidden",
        ),
        cel(
            "!has(self.extraVolumes) || self.extraVolumes.all(v, self.extraVolumes.exists_one(w, "
            "w.mountPath == v.mountPath))",
            "extraVolumes mount paths must be unique",
            field_path=".extraVolumes",
        ),
    ]


class PodHatches(ApiModel):
    """Fields of every kind's spec that reach into its workload pods (GKE's escape hatches)."""

    model_config = ApiModel.model_config | {"json_schema_extra": validations(*pod_hatch_rules())}

    scheduling: PodScheduling | None = Field(
        None,
        description="Tolerations, affinity, priorityClassName and extra node selectors of the workload pods.",
    )
    env: list[EnvVar] | None = Field(
        None,
        description="Environment variables of the workload container: plain values, or keys of Secrets and "
        "ConfigMaps. The operator's own names are refused.",
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] | None = Field(
        None,
        description="Every key of these Secrets or ConfigMaps as variables; the operator's own variables win over "
        "same-named keys (Kubernetes gives env precedence over envFrom).",
        max_length=16,
    )
    extra_volumes: list[ExtraVolume] | None = Field(
        None,
        description="Volumes of your own mounted into the workload container. hostPath, the operator's volume "
        "names and mount paths (the bucket's, /scratch, /dev/shm, /etc/mmft, /outputs) are refused.",
        max_length=MAX_EXTRA_VOLUMES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _fenced_off(self) -> PodHatches:
        mount_paths = [volume.mount_path for volume in self.extra_volumes or []]
        if len(set(mount_paths)) != len(mount_paths):
            raise ValueError("extraVolumes mount paths must be unique")
        env_names = [variable.name for variable in self.env or []]
        if len(set(env_names)) != len(env_names):
            raise ValueError("env names must be unique")
        names = [volume.name for volume in self.extra_volumes or []]
        if len(set(names)) != len(names):
            raise ValueError("extraVolumes names must be unique")
        bucket = getattr(self, "bucket", None)
        if bucket is not None:
            for path in mount_paths:
                if _overlaps(path, bucket.mount_path.rstrip("/")):
                    raise ValueError(
                        f"extraVolumes mountPath {path} overlaps spec.bucket.mountPath {bucket.mount_path}"
                    )
        return self
