"""FineTuneJob: one Axolotl fine-tuning run of a multimodal model on GKE Autopilot GPUs."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mmft_operator.accelerators import DEFAULT_ACCELERATOR
from mmft_operator.contracts.progress import TrainingOutputs, TrainingProgress

from .axolotl_keys import TRACKING_KEYS, TYPED_KEYS
from .common import (
    ABSOLUTE_PATH_PATTERN,
    GCS_URI_PATTERN,
    Accelerator,
    ApiModel,
    CommonStatus,
    GcsBucket,
    JobTtlSeconds,
    LocalObjectReference,
    PinnedImage,
    PodMetadata,
    ProvisioningChoice,
    Quantity,
    Retry,
    SecretKeySelector,
    WorkloadResources,
    cel,
    check_flex_start_deadline,
    flex_start_deadline_rule,
    provisioning_rules,
    validations,
)
from .pod_hatches import PodHatches, PodScheduling, pod_hatch_rules
from .tracking import TrackingSettings

# Gemma 3's language model in current transformers lives at model.language_model.layers.N (the seed's
# `language_model.model.layers...` regex matches no module).
GEMMA3_LORA_TARGET_MODULES = r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"

# Axolotl keys that the operator sets (paths, the token flag, TensorBoard) or that carry secrets: key -> (JSON type,
# where to set it instead). With the keys of the typed fields (axolotl_keys.TYPED_KEYS) they are refused in
# spec.training.overrides: an override would silently fight the value the operator renders.
OPERATOR_OWNED_KEYS: dict[str, tuple[str, str]] = {
    "base_model": ("string", "spec.baseModel"),
    "datasets": ("array", "spec.dataset"),
    "test_datasets": ("array", "spec.dataset"),
    "output_dir": ("string", "the operator (the output volume)"),
    "hf_use_auth_token": ("boolean", "spec.huggingFaceTokenSecretRef"),
    "hub_token": ("string", "a Secret (never in the spec)"),
    "wandb_api_key": ("string", "a Secret (never in the spec)"),
    "use_tensorboard": ("boolean", "spec.tensorboard"),
    "use_wandb": ("boolean", "spec.tracking.wandb"),
    "use_mlflow": ("boolean", "spec.tracking.mlflow"),
    "tensorboard_log_dir": ("string", "the operator (TensorBoard syncs to the bucket)"),
}


def reserved_override_keys() -> dict[str, tuple[str, str]]:
    """Every key refused in spec.training.overrides: key -> (JSON type, where to set it instead)."""
    typed = {typed_key.key: (typed_key.json_type, _api_path(typed_key.field)) for typed_key in TYPED_KEYS}
    tracking = {
        typed_key.key: (typed_key.json_type, _api_path(typed_key.field, TrackingSettings, "spec.tracking"))
        for typed_key in TRACKING_KEYS
    }
    return {**OPERATOR_OWNED_KEYS, **typed, **tracking}


def _api_path(field: str, root: type[ApiModel] | None = None, prefix: str = "spec.training") -> str:
    """spec.training.lora.r for "lora.r": the field's path as a user writes it (camelCase aliases)."""
    model, names = root or TrainingSettings, []
    for name in field.split("."):
        info = model.model_fields[name]
        names.append(info.alias or name)
        model = _model_of(info.annotation)
    return f"{prefix}." + ".".join(names)


def _model_of(annotation: Any) -> Any:
    """The model of an optional field (`X | None` -> X)."""
    members = [arg for arg in getattr(annotation, "__args__", ()) if arg is not type(None)]
    return members[0] if len(members) == 1 else annotation


def _reserved_override_schema(schema: dict[str, Any]) -> None:
    """Reserved keys are declared (typed) so CEL can see them, and each refused with a pointer to its field. Run when
    the schema is generated (after TrainingSettings exists: the typed keys' paths come from its aliases)."""
    reserved = reserved_override_keys()
    properties = {}
    for key, (json_type, owner) in reserved.items():
        property_schema: dict[str, Any] = {"type": json_type, "description": f"Reserved: set {owner} instead."}
        if json_type == "array":
            property_schema["items"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        properties[key] = property_schema
    rules = [
        cel(
            f"!has(self.{key})",
            f"overrides.{key} is not allowed: set {owner} instead",
            field_path=f".{key}",
            reason="FieldValueForbidden",
        )
        for key, (_json_type, owner) in reserved.items()
    ]
    schema.update({"x-kubernetes-preserve-unknown-fields": True, "properties": properties, **validations(*rules)})


class DatasetSource(ApiModel):
    """Training data: a DatasetPrep's output, or JSONL files in Axolotl's chat_template format."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.datasetPrepRef) != has(self.trainPath)",
                "set exactly one of datasetPrepRef or trainPath",
            ),
            cel(
                "!has(self.validationPath) || has(self.trainPath)",
                "validationPath goes with trainPath; a DatasetPrep provides its own validation split",
                field_path=".validationPath",
            ),
        )
    }

    dataset_prep_ref: LocalObjectReference | None = Field(
        None, description="A DatasetPrep in this namespace; the job waits until it has Succeeded and uses its splits."
    )
    train_path: str | None = Field(
        None,
        description="Path of the training JSONL as seen inside the pod (e.g. on the GCS Fuse mount).",
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=1024,
    )
    validation_path: str | None = Field(
        None,
        description="Optional validation JSONL path inside the pod.",
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=1024,
    )


class LoraSettings(ApiModel):
    """LoRA adapter shape."""

    r: int = Field(32, description="LoRA rank (lora_r).", ge=1, le=1024)
    alpha: int = Field(16, description="LoRA scaling alpha (lora_alpha).", ge=1, le=4096)
    dropout: float = Field(
        0.05, description="LoRA dropout probability (lora_dropout); 1 would drop every activation.", ge=0, lt=1
    )
    target_modules: str = Field(
        GEMMA3_LORA_TARGET_MODULES,
        description="Regular expression over module names that get adapters (lora_target_modules). The default "
        "matches Gemma 3's language-model attention and MLP projections in current transformers.",
        min_length=1,
        max_length=1024,
    )


class TrainingSettings(ApiModel):
    """Axolotl settings typed for the common knobs. Empty batch/checkpointing fields take per-accelerator defaults."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.adapter) || self.adapter != 'qlora' || !has(self.loadIn4bit) || self.loadIn4bit",
                "adapter qlora requires loadIn4bit: true",
                field_path=".loadIn4bit",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.loadIn4bit) || !self.loadIn4bit || (has(self.adapter) && self.adapter == 'qlora')",
                "loadIn4bit: true needs adapter: qlora",
                field_path=".adapter",
                reason="FieldValueInvalid",
            ),
            cel(
                "!(has(self.loadIn4bit) && self.loadIn4bit && self.loadIn8bit)",
                "loadIn4bit and loadIn8bit are exclusive",
                field_path=".loadIn8bit",
            ),
            cel(
                "has(self.maxSteps) != has(self.numEpochs)",
                "set exactly one of maxSteps or numEpochs",
                field_path=".maxSteps",
            ),
            cel(
                "self.saveStrategy != 'steps' || has(self.saveSteps)",
                "saveStrategy steps needs saveSteps",
                field_path=".saveSteps",
            ),
            cel(
                "!has(self.maxSteps) || !has(self.warmupSteps) || self.warmupSteps < self.maxSteps",
                "warmupSteps must be below maxSteps",
                field_path=".warmupSteps",
            ),
        )
    }

    adapter: Literal["lora", "qlora"] | None = Field(
        None,
        description="Adapter type: lora (bf16 base), or qlora (4-bit base). Empty: chosen by the accelerator's "
        "memory and the model's size (docs/bench-trainer.md): lora where it fits, qlora otherwise.",
    )
    load_in_4bit: bool | None = Field(
        None, alias="loadIn4bit", description="Load the base model in 4 bit (bitsandbytes). Empty: true for qlora."
    )
    load_in_8bit: bool = Field(False, alias="loadIn8bit", description="Load the base model in 8 bit.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA rank, alpha, dropout, target modules.")
    sequence_len: int = Field(4096, description="Maximum tokens per sample (sequence_len).", ge=128, le=131072)
    optimizer: Literal[
        "adamw_torch_fused",
        "adamw_torch",
        "adamw_8bit",
        "adamw_bnb_8bit",
        "paged_adamw_8bit",
        "paged_adamw_32bit",
        "adafactor",
        "sgd",
        "lion_8bit",
    ] = Field("adamw_torch_fused", description="Optimizer (Axolotl/transformers name).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_min_lr", "rex"] = Field(
        "cosine", description="Learning-rate scheduler."
    )
    learning_rate: float = Field(2e-5, description="Peak learning rate.", gt=0, le=1)
    weight_decay: float = Field(0.01, description="AdamW weight decay.", ge=0, le=1)
    max_steps: int | None = Field(
        None, description="Optimizer steps to train (exclusive with numEpochs).", ge=1, le=10_000_000
    )
    num_epochs: int | None = Field(None, description="Epochs to train (exclusive with maxSteps).", ge=1, le=1000)
    warmup_steps: int | None = Field(
        None, description="Learning-rate warmup steps. Empty: 10% of maxSteps, at most 100.", ge=0, le=1_000_000
    )
    gradient_checkpointing: bool | None = Field(
        None, description="Recompute activations to save memory. Empty: decided per accelerator."
    )
    gradient_accumulation_steps: int | None = Field(
        None, description="Micro batches per optimizer step. Empty: decided per accelerator.", ge=1, le=1024
    )
    micro_batch_size: int | None = Field(
        None, description="Samples per GPU per forward pass. Empty: decided per accelerator.", ge=1, le=512
    )
    save_strategy: Literal["steps", "epoch", "no"] = Field(
        "steps", description="When to checkpoint. steps (default) makes Spot preemption cheap to resume from."
    )
    save_steps: int | None = Field(
        50, description="Checkpoint every N optimizer steps (saveStrategy steps).", ge=1, le=1_000_000
    )
    save_total_limit: int = Field(2, description="Checkpoints kept on the output volume.", ge=1, le=100)
    logging_steps: int = Field(10, description="Log (and report progress) every N optimizer steps.", ge=1, le=100000)
    attention_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "sdpa",
        description="Attention kernel. sdpa runs without downloading kernels; flash_attention_2 needs it in the image.",
    )
    chat_template: str = Field(
        "gemma3", description="Axolotl chat template name.", pattern=r"^[a-z0-9_]+$", max_length=64
    )
    image_size: int = Field(512, description="Images are resized to this many pixels (image_size).", ge=32, le=4096)
    image_resize_algorithm: Literal["bilinear", "bicubic", "lanczos"] = Field(
        "bilinear", description="Resampling used to resize images."
    )
    seed: int = Field(42, description="Random seed for data order and adapter initialisation.", ge=0)
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra Axolotl config keys for the long tail (snake_case, as in Axolotl's docs). Keys owned by "
        "typed fields, paths and secrets are refused.",
        max_length=64,
        json_schema_extra=_reserved_override_schema,
    )

    @field_validator("overrides")
    @classmethod
    def _no_reserved_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        """The API server's rule on reserved keys, for `mmft render`."""
        reserved = reserved_override_keys()
        for key in overrides:
            if key in reserved:
                raise ValueError(f"overrides.{key} is not allowed: set {reserved[key][1]} instead")
        return overrides


class ComputeSettings(WorkloadResources, ProvisioningChoice):
    """Where and on what the trainer runs."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.gpusPerNode != 0 || (has(self.cpu) && has(self.memory))",
                "gpusPerNode 0 (no GPU) needs cpu and memory: there is no accelerator to size the pod from",
                field_path=".gpusPerNode",
            ),
            cel(
                "self.gpusPerNode != 0 || self.nodes == 1",
                "gpusPerNode 0 (no GPU) trains in one process on one node: nodes must be 1",
                field_path=".nodes",
            ),
            *provisioning_rules("gpusPerNode"),
        )
    }

    accelerator: Accelerator = Field(
        DEFAULT_ACCELERATOR, description="GKE accelerator type (node label cloud.google.com/gke-accelerator)."
    )
    gpus_per_node: Literal[0, 1, 2, 4, 8] = Field(
        1,
        description="GPUs per node; one training process per GPU. 0: no GPU, one process on the CPU of a "
        "general-purpose node (toy models, tests, the local cluster's real node); accelerator is then ignored and "
        "cpu and memory are required.",
    )
    nodes: int = Field(1, description="Nodes; more than one runs an Indexed Job with torchrun rendezvous.", ge=1, le=64)

    @model_validator(mode="after")
    def _flex_start_needs_gpus(self) -> ComputeSettings:
        self.check_flex_start_has_gpus(self.gpus_per_node, "gpusPerNode")
        return self


class OutputVolume(ApiModel):
    """The PersistentVolumeClaim of a single-node run, holding checkpoints and the final adapter. Several nodes
    cannot share one: their checkpoints go to the bucket (docs/trainer.md, Where checkpoints are)."""

    size: Quantity = Field("100Gi", description="Capacity of the output volume.")
    storage_class_name: str = Field(
        "standard-rwo",
        description="StorageClass of the output volume.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )


class TensorBoardSettings(ApiModel):
    """TensorBoard reads event files that the trainer syncs to the bucket, never the trainer's volume."""

    enabled: bool = Field(
        True,
        description="Run a TensorBoard Deployment and ClusterIP Service for this job. Each one is a pod: with "
        "hundreds of jobs, turning it off halves the control plane's work per job (docs/benchmarks.md).",
    )
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Service type. ClusterIP by default: reach it with kubectl port-forward."
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        description="Seconds the TensorBoard keeps running once the job finished (succeeded or failed); then the "
        "operator removes its Deployment and Service, and the event files stay in the bucket. Unset: the "
        "operator's MMFT_TENSORBOARD_TTL_SECONDS_AFTER_FINISHED (1 day). Raise it later to bring a removed "
        "TensorBoard back (docs/tensorboard.md).",
    )
    scheduling: PodScheduling | None = Field(
        None,
        description="Tolerations, affinity, priorityClassName and node selectors of the TensorBoard pod (a small "
        "CPU pod: spec.scheduling, meant for the GPU pods, does not apply to it).",
    )


class ExportSettings(ApiModel):
    """Upload of the result to Cloud Storage after a successful run."""

    uri: str = Field(
        description="Destination, e.g. gs://my-bucket/tuned-models/gemma3-melanoma.",
        pattern=GCS_URI_PATTERN,
        max_length=1024,
    )
    format: Literal["adapter", "merged", "both"] = Field(
        "adapter", description="adapter (LoRA weights), merged (adapter merged into the base model) or both."
    )


class FineTuneJobSpec(PodHatches):
    """Desired state of a FineTuneJob. Fields that shape the run lock once its first pod runs."""

    model_config = PodHatches.model_config | {
        "json_schema_extra": validations(
            *pod_hatch_rules(),
            flex_start_deadline_rule(),
            cel(
                "!has(self.outputVolume) || !has(self.compute) || !has(self.compute.nodes) || self.compute.nodes == 1",
                "outputVolume is a ReadWriteOnce disk that only one node can attach: with compute.nodes > 1 the "
                "checkpoints go to the bucket (<mountPath>/mmft/<namespace>/<name>/run) and scratch to each pod's "
                "ephemeral storage (compute.ephemeralStorage); remove outputVolume",
                field_path=".outputVolume",
            ),
        )
    }

    base_model: str = Field(
        description="Hugging Face model id (e.g. google/gemma-3-4b-it) or an absolute path inside the pod.",
        min_length=1,
        max_length=512,
        pattern=r"^(/[^\x00]+|[A-Za-z0-9][\w.-]*/[\w.-]+)$",
    )
    base_model_size: Literal["4B", "12B", "27B"] | None = Field(
        None,
        description="Size class of baseModel (Gemma 3 shapes), which sizes the per-accelerator defaults of "
        "micro batch, adapter and gradient checkpointing. Empty: read from baseModel's name (gemma-3-12b-it is "
        "12B), else 4B.",
    )
    dataset: DatasetSource = Field(description="Training data.")
    training: TrainingSettings = Field(description="Axolotl training settings (maxSteps or numEpochs at least).")
    compute: ComputeSettings = Field(
        default_factory=ComputeSettings,
        description="Accelerator, GPUs, nodes, provisioning (on demand, Spot, flex-start).",
    )
    bucket: GcsBucket = Field(description="Cloud Storage bucket mounted with GCS Fuse (data, TensorBoard events).")
    output_volume: OutputVolume | None = Field(
        None,
        description="Checkpoint volume of a single-node run (a ReadWriteOnce PersistentVolumeClaim). Empty: 100Gi "
        "of standard-rwo. Refused with compute.nodes > 1, whose ranks checkpoint to the bucket.",
    )
    hugging_face_token_secret_ref: SecretKeySelector | None = Field(
        None, description="Secret holding a Hugging Face token (gated models such as Gemma). Passed as HF_TOKEN."
    )
    service_account_name: str = Field(
        "default",
        description="Kubernetes ServiceAccount of the pods, bound to a Google service account by Workload Identity.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    tensorboard: TensorBoardSettings = Field(default_factory=TensorBoardSettings, description="TensorBoard.")
    tracking: TrackingSettings | None = Field(
        None, description="Also log metrics to Weights & Biases or MLflow (credentials by Secret reference only)."
    )
    export: ExportSettings | None = Field(None, description="Upload the adapter/merged model to Cloud Storage.")
    active_deadline_seconds: int = Field(
        7 * 24 * 3600, description="Maximum run time of the training Job in seconds.", ge=60, le=30 * 24 * 3600
    )
    ttl_seconds_after_finished: JobTtlSeconds = None
    retry: Retry = 0
    backoff_limit: int = Field(
        2, description="Retries after failures that are not preemptions or configuration errors.", ge=0, le=20
    )
    trainer_image: PinnedImage | None = Field(
        None, description="Trainer image pinned by tag or digest (never latest). Empty: the operator's default."
    )
    suspend: bool = Field(False, description="Create the Job suspended (or suspend it); Kueue admits by unsuspending.")
    queue_name: str | None = Field(
        None,
        description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label on the Job.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=63,
    )
    pod_metadata: PodMetadata = Field(default_factory=PodMetadata, description="Extra pod labels and annotations.")

    @model_validator(mode="after")
    def _flex_start_deadline(self) -> FineTuneJobSpec:
        check_flex_start_deadline(self.compute.provisioning_model, self.active_deadline_seconds)
        return self


class FineTuneProgress(TrainingProgress):
    """Live training progress, reported by the trainer."""

    summary: str | None = Field(None, description="step/totalSteps (percent), for printer columns.")


class FineTuneJobOutputs(TrainingOutputs):
    """Where the run's results are: the locations the operator chose, then what the trainer reported."""

    exportUri: str | None = Field(None, description="gs:// URI the trainer exports under (spec.export.uri or default).")
    checkpointVolume: str | None = Field(
        None, description="PersistentVolumeClaim holding the checkpoints of a single-node run (outputDir is on it); "
        "empty for several nodes, whose outputDir is on the bucket."
    )


class StartupStages(ApiModel):
    """How long each stage before training took for the current trainer pod, so a slow start says where it went."""

    waiting_for_node_seconds: float | None = Field(
        None, ge=0, description="From the pod's creation until it was scheduled (GKE provisioning a GPU node)."
    )
    pulling_image_seconds: float | None = Field(
        None,
        ge=0,
        description="From scheduling until the trainer container started (image pull, GCS Fuse sidecar start).",
    )
    loading_model_seconds: float | None = Field(
        None, ge=0, description="From the trainer's start until training began (preflight, model and data loading)."
    )
    first_step_seconds: float | None = Field(
        None, ge=0, description="The first optimizer step (compilation, data loader warm-up)."
    )


class TensorBoardRetention(ApiModel):
    """When the TensorBoard of a finished job is removed (spec.tensorboard.ttlSecondsAfterFinished)."""

    state: Literal["Retained", "Removed"] = Field(
        description="Retained: still running after the run, until removeAt. Removed: its Deployment and Service "
        "are gone; the event files stay in the bucket (status.outputs.tensorboardDir)."
    )
    remove_at: dt.datetime = Field(description="When it is (or was) removed: completionTime + its TTL.")


class FineTuneJobStatus(CommonStatus):
    """Observed state of a FineTuneJob."""

    outputs: FineTuneJobOutputs = Field(
        default_factory=FineTuneJobOutputs, description="Checkpoint, TensorBoard and export locations."
    )
    progress: FineTuneProgress | None = Field(None, description="Live progress from the trainer.")
    startup: StartupStages | None = Field(
        None, description="Seconds each start-up stage of the current trainer pod took (pod timestamps, trainer)."
    )
    preemptions: int = Field(
        0, description="Pods lost to preemption or node disruption (not counted as failures).", ge=0
    )
    failures: int = Field(0, description="Pod failures counted against backoffLimit.", ge=0)
    tensorboard: TensorBoardRetention | None = Field(
        None, description="Set once the job finished with a TensorBoard: when it is, or was, removed."
    )


# Locked once a pod of the run started (status.runStartedTime): until then a change replaces the waiting Job.
IMMUTABLE_AFTER_START = (
    "baseModel", "baseModelSize", "training", "compute", "export",
    "scheduling", "env", "envFrom", "extraVolumes", "tracking",
)
# Locked once the Job exists (status.startTime): the dataset was resolved, the output claim created with them.
IMMUTABLE_ONCE_JOB_EXISTS = ("dataset", "bucket", "outputVolume")
