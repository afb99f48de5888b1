"""Types shared by the three mmft.io kinds.

Every field carries a description: it becomes the CRD's OpenAPI description and so `kubectl explain`.
Field names are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from mmft_operator.accelerators import LABELS
from mmft_operator.gke import FLEX_START_MAX_RUN_SECONDS, Provisioning

GROUP = "mmft.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes resource.Quantity, as the API server's own regex spells it, less the minus sign: every quantity in this
# API (requests, capacities) is a size, and a negative one is refused at apply time.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Cloud Storage bucket names: 3-63 characters of lowercase letters, digits, dashes, underscores and dots.
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
GCS_URI_PATTERN = r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$"
ABSOLUTE_PATH_PATTERN = r"^/[^\x00]*$"
IMAGE_PATTERN = r"^[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$"

PinnedImage = Annotated[
    str,
    Field(
        pattern=IMAGE_PATTERN,
        max_length=512,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.contains('@sha256:') || (self.substring(self.lastIndexOf('/') + 1).contains(':') "
                    "&& !self.endsWith(':latest'))",
                    "message": "image must be pinned by a tag other than latest or by a digest (@sha256:...)",
                }
            ]
        },
    ),
]

# The GKE accelerator labels of mmft_operator.accelerators, the one table of supported cards.
Accelerator = Literal[LABELS]


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected (the API server prunes them first)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


Quantity = Annotated[
    str,
    Field(
        # `minimum` applies to the integer form (8), `pattern` to the string form ("8", "32Gi").
        json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN, "minimum": 0},
    ),
]


# The finished Job's retention: unset, the operator keeps it by outcome (MMFT_SUCCEEDED_JOB_TTL_SECONDS, 1 day;
# MMFT_FAILED_JOB_TTL_SECONDS, 7 days) and sets the Job's ttlSecondsAfterFinished once status records the outcome.
JobTtlSeconds = Annotated[
    int | None,
    Field(
        description="Seconds the finished Job and its pods (their logs) are kept, whatever the outcome. Unset: the "
        "operator's retention by outcome, 1 day after success and 7 days after failure by default "
        "(MMFT_SUCCEEDED_JOB_TTL_SECONDS, MMFT_FAILED_JOB_TTL_SECONDS). Status stays when the Job goes, and the run "
        "is never repeated.",
        ge=0,
    ),
]

# Retry in place: raising the counter (in git or with kubectl patch) replaces a Failed run's Job with a new one.
Retry = Annotated[
    int,
    Field(
        description="Raise this counter to run a Failed resource again under the same name: the operator deletes "
        "the failed Job and creates a new one (status.attempt records which). Only while status.phase is Failed; "
        "it may never decrease.",
        ge=0,
        le=1000,
        json_schema_extra=validations(
            cel("self >= oldSelf", "spec.retry may only increase", reason="FieldValueForbidden")
        ),
    ),
]


class LocalObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: str = Field(
        description="Name of the referenced object in this namespace.",
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )


class SecretKeySelector(ApiModel):
    """A key of a Secret in the same namespace. Its value is passed to pods as an environment variable only."""

    name: str = Field(description="Secret name.", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    key: str = Field(
        "token", description="Key within the Secret.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$"
    )


class GcsBucket(ApiModel):
    """A Cloud Storage bucket mounted into pods with the Cloud Storage FUSE CSI driver."""

    name: str = Field(description="Bucket name (without gs://).", pattern=BUCKET_PATTERN)
    mount_path: str = Field(
        "/mnt/gcs",
        description="Where the bucket is mounted inside pods.",
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=256,
    )
    mount_options: list[Annotated[str, Field(max_length=256, pattern=r"^[^,\s]+$")]] = Field(
        default_factory=lambda: ["implicit-dirs"],
        description="gcsfuse mount options (e.g. implicit-dirs, file-cache:max-size-mb:-1). uid/gid for the "
        "non-root workload user are added by the operator.",
        max_length=32,
    )
    sidecar_cpu: Quantity | None = Field(
        None, description="CPU request and limit of the gke-gcsfuse-sidecar (annotation gke-gcsfuse/cpu-*)."
    )
    sidecar_memory: Quantity | None = Field(
        None, description="Memory request and limit of the gke-gcsfuse-sidecar (annotation gke-gcsfuse/memory-*)."
    )
    sidecar_ephemeral_storage: Quantity | None = Field(
        None,
        description="Ephemeral storage of the gke-gcsfuse-sidecar, used by its file cache "
        "(annotation gke-gcsfuse/ephemeral-storage-*).",
    )


class PodMetadata(ApiModel):
    """Extra labels and annotations for the workload pods (cost allocation, policy tags)."""

    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, description="Labels added to the workload pods.", max_length=64
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        description="Annotations added to the workload pods. The operator's own (gke-gcsfuse/*) win on conflict.",
        max_length=64,
    )


class Condition(ApiModel):
    """A Kubernetes API convention condition."""

    type: str = Field(description="Condition type, e.g. Succeeded, Running, DatasetReady.", max_length=316)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="CamelCase machine-readable reason for the last transition.",
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field("", description="Human-readable details.", max_length=32768)
    last_transition_time: dt.datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed from.", ge=0
    )


class CommonStatus(ApiModel):
    """Status fields every mmft kind has."""

    observed_generation: int | None = Field(None, description="The metadata.generation last reconciled.", ge=0)
    phase: str | None = Field(None, description="One-word summary of the conditions, for printer columns.")
    reason: str | None = Field(None, description="Reason of the condition that explains the phase.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Observations of the resource's state, keyed by type (Kubernetes API conventions; "
        "kstatus Reconciling/Stalled included).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    start_time: dt.datetime | None = Field(None, description="When the workload Job was created.")
    run_started_time: dt.datetime | None = Field(
        None,
        description="When a pod of the workload Job first started running; the fields that shape the run lock "
        "then. Kept once set.",
    )
    completion_time: dt.datetime | None = Field(None, description="When the workload finished (succeeded or failed).")
    attempt: int | None = Field(
        None, description="The spec.retry value the current run's Job was created for (0: the first run).", ge=0
    )
    children: list[str] = Field(
        default_factory=list, description="Objects this resource owns, as Kind/name (deleted with it)."
    )
    children_hash: str | None = Field(
        None, description="Hash of the children as last applied; the operator re-reads them only when it changes."
    )
    resolved: dict[str, str] = Field(
        default_factory=dict,
        description="Inputs resolved from referenced resources (dataset paths, model locations and size classes) "
        "the Job was built with; kept so the run stays reproducible if a referenced resource changes later.",
    )


class WorkloadResources(ApiModel):
    """Compute requested by the workload's main container. Empty fields take the operator's per-accelerator defaults."""

    cpu: Quantity | None = Field(None, description="CPU request, e.g. 8.")
    memory: Quantity | None = Field(None, description="Memory request, e.g. 32Gi.")
    ephemeral_storage: Quantity | None = Field(None, description="Ephemeral storage request, e.g. 10Gi.")


class WorkloadJobSettings(ApiModel):
    """How the workload Job of a DatasetPrep or Evaluation runs."""

    service_account_name: str = Field(
        "default",
        description="ServiceAccount of the pod (Workload Identity).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    image: PinnedImage | None = Field(
        None, description="Workload image pinned by tag or digest. Empty: the operator's default."
    )
    active_deadline_seconds: int = Field(24 * 3600, description="Maximum run time in seconds.", ge=60)
    ttl_seconds_after_finished: JobTtlSeconds = None
    retry: Retry = 0
    backoff_limit: int = Field(2, description="Retries of the Job.", ge=0, le=20)
    pod_metadata: PodMetadata = Field(default_factory=PodMetadata, description="Extra pod labels and annotations.")


class ProvisioningChoice(ApiModel):
    """How GKE provisions the workload's node: on demand, Spot, or flex-start (Dynamic Workload Scheduler)."""

    provisioning: Provisioning | None = Field(
        None,
        description="onDemand (default), spot (cheaper, preemptible: 25 s notice; preemptions resume from the last "
        "checkpoint and do not count against retries) or flexStart (GPUs obtained when capacity frees up, for at "
        f"most {FLEX_START_MAX_RUN_SECONDS // 86400} days: activeDeadlineSeconds must fit). Empty: onDemand, or "
        "spot when the deprecated spot is true.",
    )
    spot: bool | None = Field(
        None, description="Deprecated: use provisioning: spot. true means provisioning spot; refused with provisioning."
    )

    @model_validator(mode="after")
    def _spot_or_provisioning(self) -> ProvisioningChoice:
        if self.spot and self.provisioning is not None:
            raise ValueError(
                "spot is deprecated and cannot be combined with provisioning: remove spot and set provisioning: spot"
            )
        return self

    def check_flex_start_has_gpus(self, gpus: int, gpus_field: str) -> None:
        if self.provisioning == "flexStart" and gpus == 0:
            raise ValueError(f"provisioning flexStart obtains GPUs: {gpus_field} 0 (no GPU) cannot use it")

    @property
    def provisioning_model(self) -> str:
        """The provisioning model in effect (the deprecated spot switch read as provisioning spot)."""
        if self.provisioning is not None:
            return self.provisioning
        return "spot" if self.spot else "onDemand"


def provisioning_rules(gpus_field: str) -> list[dict[str, str]]:
    """Rules of a compute block with a ProvisioningChoice; `gpus_field` names its GPU count."""
    return [
        cel(
            "!(has(self.spot) && self.spot && has(self.provisioning))",
            "spot is deprecated and cannot be combined with provisioning: remove spot and set provisioning: spot",
            field_path=".spot",
            reason="FieldValueForbidden",
        ),
        cel(
            f"!has(self.provisioning) || self.provisioning != 'flexStart' || self.{gpus_field} != 0",
            f"provisioning flexStart obtains GPUs: {gpus_field} 0 (no GPU) cannot use it",
            field_path=".provisioning",
        ),
    ]


def flex_start_deadline_rule(deadline_field: str = "activeDeadlineSeconds") -> dict[str, str]:
    """Spec-level: a flex-start node lives at most seven days, so the Job's deadline must fit in them."""
    return cel(
        f"!has(self.compute.provisioning) || self.compute.provisioning != 'flexStart' || "
        f"self.{deadline_field} <= {FLEX_START_MAX_RUN_SECONDS}",
        f"provisioning flexStart runs at most {FLEX_START_MAX_RUN_SECONDS} s (7 days): "
        f"{deadline_field} must be at most {FLEX_START_MAX_RUN_SECONDS}",
        field_path=f".{deadline_field}",
    )


def check_flex_start_deadline(provisioning: str, deadline_seconds: int) -> None:
    """The same check for `mmft render` (pydantic)."""
    if provisioning == "flexStart" and deadline_seconds > FLEX_START_MAX_RUN_SECONDS:
        raise ValueError(
            f"provisioning flexStart runs at most {FLEX_START_MAX_RUN_SECONDS} s (7 days): activeDeadlineSeconds "
            f"must be at most {FLEX_START_MAX_RUN_SECONDS}"
        )
