"""Children of a DatasetPrep: a CPU Job running `mmft dataprep`, and its report ConfigMap and Role."""

from __future__ import annotations

from typing import Any

from mmft_operator.api.datasetprep import DatasetPrepSpec
from mmft_operator.settings import OperatorSettings

from . import common
from .common import Owner
from .workload_job import WorkloadPod, build_workload_job, report_children

KIND = "DatasetPrep"
COMPONENT = "dataprep"
DEFAULT_CPU = "8"
DEFAULT_MEMORY = "32Gi"
DEFAULT_EPHEMERAL_STORAGE = "2Gi"
# Archives are downloaded and extracted on /scratch: a claim of its own, since a general-purpose Autopilot pod may ask
# at most 10Gi of ephemeral storage (mmft_operator.autopilot_rules).
SCRATCH_VOLUME_SIZE = "100Gi"


def output_dir(spec: DatasetPrepSpec) -> str:
    return f"{spec.bucket.mount_path}/{spec.output.path.strip('/')}"


def output_paths(spec: DatasetPrepSpec) -> dict[str, str]:
    """Where the splits land, as seen by pods that mount the same bucket at the same path."""
    base = output_dir(spec)
    return {
        "trainJsonl": f"{base}/train.jsonl",
        "validationJsonl": f"{base}/validation.jsonl",
        "testJsonl": f"{base}/test.jsonl",
        "statsJson": f"{base}/stats.json",
        "imagesDir": f"{base}/images",
    }


def dataprep_command(spec: DatasetPrepSpec) -> list[str]:
    source, columns, prompts, split, images = spec.source, spec.columns, spec.prompts, spec.split, spec.images
    command = ["mmft", "dataprep", "--labels-csv", source.labels_csv]
    if source.images_path:
        command += ["--images-dir", source.images_path]
    if source.images_gcs_uri:
        command += ["--images-dir", source.images_gcs_uri]
    for url in source.archive_urls or []:
        command += ["--images-archive-url", url]
    if source.duplicates_csv:
        command += ["--duplicates-csv", source.duplicates_csv]
    base = output_dir(spec)
    command += [
        "--output-dir",
        base,
        "--image-path-prefix",
        f"{base}/images",
        "--download-dir",
        "/scratch/downloads",
        "--image-column",
        columns.image,
        "--label-column",
        columns.label,
        "--group-column",
        columns.group if split.grouped else "",
        "--positive-value",
        columns.positive_value,
        "--image-extension",
        columns.image_extension,
        "--system-prompt",
        prompts.system,
        "--question",
        prompts.question,
        "--positive-answer",
        prompts.positive_answer,
        "--negative-answer",
        prompts.negative_answer,
        "--train-fraction",
        repr(split.train),
        "--validation-fraction",
        repr(split.validation),
        "--test-fraction",
        repr(split.test),
        "--seed",
        str(split.seed),
        "--balance",
        split.balance,
        "--image-size",
        str(images.size),
        "--image-format",
        images.format,
        "--jpeg-quality",
        str(images.quality),
    ]
    return command


def build_dataprep_job(owner: Owner, spec: DatasetPrepSpec, settings: OperatorSettings) -> dict[str, Any]:
    resources = spec.resources
    provisioning = resources.provisioning or "onDemand"
    pod = WorkloadPod(
        component=COMPONENT,
        command=dataprep_command(spec),
        image=spec.image or settings.workload_image,
        service_account_name=spec.service_account_name,
        bucket=spec.bucket,
        pod_metadata=spec.pod_metadata,
        requests=common.resource_requests(
            resources.cpu or DEFAULT_CPU,
            resources.memory or DEFAULT_MEMORY,
            resources.ephemeral_storage or DEFAULT_EPHEMERAL_STORAGE,
        ),
        report_file=f"{output_dir(spec)}/report.json",
        scratch_volume_size=SCRATCH_VOLUME_SIZE,
        active_deadline_seconds=spec.active_deadline_seconds,
        backoff_limit=spec.backoff_limit,
        attempt=spec.retry,
        hatches=spec,
        provisioning=provisioning,
        node_selector=common.node_selector(provisioning),
    )
    return build_workload_job(owner, pod, settings)


def build_children(owner: Owner, spec: DatasetPrepSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    children = [
        *report_children(owner, COMPONENT, spec.service_account_name),
        build_dataprep_job(owner, spec, settings),
    ]
    return [common.with_spec_hash(child) for child in children]
