"""Children of an Evaluation: a GPU Job running `mmft evaluate`, and its report ConfigMap and Role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmft_operator.accelerators import profile
from mmft_operator.api.evaluation import EvaluationSpec
from mmft_operator.model_location import parse_location
from mmft_operator.settings import OperatorSettings
from mmft_operator.training_defaults import ModelShape

from . import common
from .common import Owner
from .workload_job import WorkloadPod, build_workload_job, report_children

KIND = "Evaluation"
COMPONENT = "evaluator"
# The default disk of a GPU evaluation pod, raised for larger downloads (default_ephemeral_storage_gib).
MIN_EPHEMERAL_STORAGE_GIB = 50

_POLICY_FLAGS = {"Fixed": "fixed", "MaxBalancedAccuracy": "max-balanced-accuracy", "TargetRecall": "target-recall"}
_COMPILE_FLAGS = {"Auto": "auto", "Off": "none", "Vision": "vision", "VisionAndLanguage": "vision+language"}
_COMPILE_MODE_FLAGS = {"Default": "default", "MaxAutotune": "max-autotune-no-cudagraphs"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model of spec.models with its reference resolved to what `mmft evaluate --model` takes."""

    name: str
    location: str  # a Hugging Face id, a path, or BASE+ADAPTER
    shape: ModelShape  # its size class, which sizes the pod's disk for the download


@dataclass(frozen=True)
class EvaluationData:
    test: str
    validation: str | None


def output_dir(spec: EvaluationSpec) -> str:
    return f"{spec.bucket.mount_path}/{spec.output_path.strip('/')}"


OUTPUT_FILES = {"report": "report.html", "metrics": "metrics.json", "predictions": "predictions.jsonl"}
CONSOLE_BROWSER = "https://console.cloud.google.com/storage/browser/"


def output_paths(spec: EvaluationSpec) -> dict[str, str]:
    """gs:// URIs of what the evaluator writes under the bucket mount."""
    return {key: gcs_uri(spec, f"{output_dir(spec)}/{name}") for key, name in OUTPUT_FILES.items()}


def gcs_uri(spec: EvaluationSpec, location: str) -> str:
    """The gs:// URI of a path under the pod's bucket mount; other locations (gs:// already) unchanged."""
    mount = spec.bucket.mount_path.rstrip("/")
    if location.startswith(f"{mount}/"):
        return f"gs://{spec.bucket.name}/{location[len(mount) + 1:]}"
    return location


def console_url(uri: str) -> str | None:
    """The Cloud console page of the folder holding a gs:// object."""
    if not uri.startswith("gs://"):
        return None
    folder = uri[len("gs://"):].rsplit("/", 1)[0]
    return f"{CONSOLE_BROWSER}{folder}"


def evaluate_command(spec: EvaluationSpec, models: list[ResolvedModel], data: EvaluationData) -> list[str]:
    command = ["mmft", "evaluate", "--test-jsonl", data.test]
    threshold = spec.threshold
    policy = threshold.policy if data.validation else "Fixed"
    if data.validation:
        command += ["--validation-jsonl", data.validation]
    for model in models:
        command += ["--model", f"{model.name}={model.location}"]
    command += [
        "--output-dir",
        output_dir(spec),
        "--method",
        spec.scoring.method,
        "--threshold-policy",
        _POLICY_FLAGS[policy],
        "--threshold",
        repr(threshold.value),
        "--positive-answer",
        spec.scoring.positive_answer,
        "--negative-answer",
        spec.scoring.negative_answer,
        "--max-new-tokens",
        str(spec.scoring.max_new_tokens),
        "--cache-dir",
        "/scratch/models",
    ]
    if threshold.target_recall is not None:
        command += ["--target-recall", repr(threshold.target_recall)]
    if spec.scoring.batch_size is not None:
        command += ["--batch-size", str(spec.scoring.batch_size)]
    if spec.scoring.method != "generate":
        command += ["--compile", _COMPILE_FLAGS[spec.scoring.compile],
                    "--compile-mode", _COMPILE_MODE_FLAGS[spec.scoring.compile_mode]]
    if spec.output_uri:
        command += ["--output-uri", spec.output_uri]
    return command


def default_ephemeral_storage_gib(models: list[ResolvedModel]) -> int:
    """The models the evaluator downloads into /scratch/models (Hugging Face ids, gs:// exports; a base shared by
    several models once), with the headroom; never below MIN_EPHEMERAL_STORAGE_GIB. A path is read where it is."""
    downloads = {}
    for model in models:
        base = parse_location(model.location).model
        if not base.startswith("/"):
            downloads[base] = model.shape.download_gib
    return max(MIN_EPHEMERAL_STORAGE_GIB, common.scratch_gib(sum(downloads.values())))


def _compile_cache_env(spec: EvaluationSpec) -> list[dict[str, str]]:
    if not spec.scoring.compile_cache_path:
        return []
    return [{"name": "TORCHINDUCTOR_CACHE_DIR",
             "value": f"{spec.bucket.mount_path}/{spec.scoring.compile_cache_path.strip('/')}"}]


def build_evaluation_job(
    owner: Owner,
    spec: EvaluationSpec,
    models: list[ResolvedModel],
    data: EvaluationData,
    settings: OperatorSettings,
) -> dict[str, Any]:
    compute = spec.compute
    card = profile(compute.accelerator)
    provisioning = compute.provisioning_model
    requests = common.resource_requests(
        compute.cpu or str(card.cpu_per_gpu * compute.gpus),
        compute.memory or f"{card.memory_gib_per_gpu * compute.gpus}Gi",
        compute.ephemeral_storage
        or (f"{default_ephemeral_storage_gib(models)}Gi" if compute.gpus else common.NO_GPU_EPHEMERAL_STORAGE),
    )
    pod = WorkloadPod(
        component=COMPONENT,
        command=evaluate_command(spec, models, data),
        image=spec.image or settings.workload_image,
        service_account_name=spec.service_account_name,
        bucket=spec.bucket,
        pod_metadata=spec.pod_metadata,
        requests=requests,
        report_file=f"{output_dir(spec)}/report.json",
        active_deadline_seconds=spec.active_deadline_seconds,
        backoff_limit=spec.backoff_limit,
        attempt=spec.retry,
        hatches=spec,
        gpus=compute.gpus,
        provisioning=provisioning,
        shm_size=common.shm_size_for(requests["memory"]),
        node_selector=common.node_selector(provisioning, compute.accelerator if compute.gpus else None),
        extra_env=[
            *common.hf_token_env(spec.hugging_face_token_secret_ref),
            {"name": "HF_HOME", "value": "/scratch/models"},
            *_compile_cache_env(spec),
        ],
    )
    return build_workload_job(owner, pod, settings)


def build_children(
    owner: Owner,
    spec: EvaluationSpec,
    models: list[ResolvedModel],
    data: EvaluationData,
    settings: OperatorSettings,
) -> list[dict[str, Any]]:
    children = [
        *report_children(owner, COMPONENT, spec.service_account_name),
        build_evaluation_job(owner, spec, models, data, settings),
    ]
    return [common.with_spec_hash(child) for child in children]
