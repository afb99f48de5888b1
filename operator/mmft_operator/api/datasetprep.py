"""DatasetPrep: raw images and a label CSV become chat_template JSONL splits with resized images."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mmft_operator.contracts.progress import DatasetPrepOutputs, DatasetPrepResults
from mmft_operator.gke import CpuProvisioning
from mmft_operator.seed_prompts import SEED_PROMPTS

from .common import (
    ABSOLUTE_PATH_PATTERN,
    ApiModel,
    CommonStatus,
    GcsBucket,
    WorkloadJobSettings,
    WorkloadResources,
    cel,
    validations,
)
from .pod_hatches import PodHatches

_HTTP_URL = r"^https?://[^\s]+$"
_SOURCE_LOCATION = r"^(/[^\x00]+|gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?|https?://[^\s]+)$"
_BUCKET_RELATIVE = r"^[^/\x00][^\x00]*$"


class DatasetPrepSource(ApiModel):
    """Where the raw images and the label CSV come from."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "[has(self.imagesPath), has(self.imagesGcsUri), has(self.archiveUrls)].filter(x, x).size() == 1",
                "set exactly one of imagesPath, imagesGcsUri or archiveUrls",
            ),
        )
    }

    labels_csv: str = Field(
        description="Label CSV: a path inside the pod (e.g. on the GCS Fuse mount), a gs:// URI or an http(s) URL. "
        "ISIC 2020 ground truth (v1 or v2) works as is.",
        pattern=_SOURCE_LOCATION,
        max_length=2048,
    )
    images_path: str | None = Field(
        None,
        description="Directory of images inside the pod, e.g. /mnt/gcs/isic/train.",
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=1024,
    )
    images_gcs_uri: str | None = Field(
        None,
        description="gs://bucket/prefix of the images, read with the Cloud Storage API.",
        pattern=r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$",
        max_length=1024,
    )
    archive_urls: list[Annotated[str, Field(pattern=_HTTP_URL, max_length=2048)]] | None = Field(
        None,
        description="Zip archives of images (e.g. the ISIC 2020 JPEG zip), downloaded resumably and extracted.",
        min_length=1,
        max_length=16,
    )
    duplicates_csv: str | None = Field(
        None,
        description="Optional list of duplicate images to drop (ISIC_2020_Training_Duplicates.csv).",
        pattern=_SOURCE_LOCATION,
        max_length=2048,
    )


class ColumnMapping(ApiModel):
    """Which CSV columns hold the image id, the label and the group (patient). ISIC 2020 by default."""

    image: str = Field(
        "image_name", description="Column with the image file name (without extension).", min_length=1, max_length=128
    )
    label: str = Field("target", description="Column with the binary label.", min_length=1, max_length=128)
    group: str = Field(
        "patient_id",
        description="Column grouping images that must stay in one split (patient).",
        min_length=1,
        max_length=128,
    )
    positive_value: str = Field(
        "1", description="Label value that means positive (malignant).", min_length=1, max_length=128
    )
    image_extension: str = Field(
        ".jpg", description="Extension appended to the image column.", pattern=r"^(\.[A-Za-z0-9]+)?$", max_length=16
    )


class PromptTemplates(ApiModel):
    """Texts of each chat_template sample. The seed's texts by default."""

    system: str = Field(SEED_PROMPTS.system, description="System message.", max_length=4096)
    question: str = Field(
        SEED_PROMPTS.question, description="User question asked with each image.", min_length=1, max_length=4096
    )
    positive_answer: str = Field(
        SEED_PROMPTS.positive_answer, description="Assistant answer for positives.", min_length=1, max_length=4096
    )
    negative_answer: str = Field(
        SEED_PROMPTS.negative_answer, description="Assistant answer for negatives.", min_length=1, max_length=4096
    )


class SplitSettings(ApiModel):
    """Stratified (by label), grouped (by patient) train/validation/test split."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.train + self.validation + self.test >= 0.999999 && "
                "self.train + self.validation + self.test <= 1.000001",
                "split fractions train + validation + test must sum to 1",
            ),
        )
    }

    train: float = Field(0.8, description="Fraction of patients' images for training.", gt=0, le=1)
    validation: float = Field(0.1, description="Fraction for validation (threshold tuning).", ge=0, lt=1)
    test: float = Field(0.1, description="Fraction for the held-out test set.", ge=0, lt=1)
    seed: int = Field(42, description="Seed of the split; the same seed gives the same split.", ge=0)
    grouped: bool = Field(True, description="Keep all images of one group (patient) in one split.")
    balance: Literal["none", "undersample", "oversample"] = Field(
        "none", description="Class balancing of the train split only."
    )


class ImageSettings(ApiModel):
    """Processed image format."""

    size: int = Field(512, description="Longest side of the written images in pixels.", ge=32, le=4096)
    format: Literal["jpeg", "png"] = Field("jpeg", description="Output format.")
    quality: int = Field(95, description="JPEG quality.", ge=1, le=100)


class DatasetPrepOutput(ApiModel):
    """Where the splits and images are written, relative to the mounted bucket."""

    path: str = Field(
        description="Directory under the bucket mount, e.g. prepared/isic2020.",
        pattern=_BUCKET_RELATIVE,
        max_length=1024,
    )


class DatasetPrepResources(WorkloadResources):
    """CPU, memory and ephemeral storage of the dataprep pod, and how its node is provisioned."""

    provisioning: CpuProvisioning | None = Field(
        None,
        description="onDemand (default) or spot (cheaper; a preempted pod is retried without counting against "
        "backoffLimit, and archive downloads resume). flexStart provisions GPUs only, so it is not offered here.",
    )


class DatasetPrepSpec(WorkloadJobSettings, PodHatches):
    """Desired state of a DatasetPrep. Locked once its first pod runs; bucket and output once the Job exists."""

    model_config = PodHatches.model_config

    source: DatasetPrepSource = Field(description="Raw images and labels.")
    columns: ColumnMapping = Field(default_factory=ColumnMapping, description="CSV column mapping.")
    prompts: PromptTemplates = Field(default_factory=PromptTemplates, description="Prompt texts.")
    split: SplitSettings = Field(default_factory=SplitSettings, description="Split fractions and grouping.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Processed image size and format.")
    bucket: GcsBucket = Field(description="Cloud Storage bucket mounted with GCS Fuse; outputs land here.")
    output: DatasetPrepOutput = Field(description="Output directory in the bucket.")
    resources: DatasetPrepResources = Field(
        default_factory=DatasetPrepResources, description="CPU Job resources and provisioning."
    )


class DatasetPrepStatus(CommonStatus):
    """Observed state of a DatasetPrep."""

    outputs: DatasetPrepOutputs = Field(
        default_factory=DatasetPrepOutputs,
        description="Where the splits land, as paths seen by pods that mount the same bucket at the same path.",
    )
    results: DatasetPrepResults | None = Field(None, description="Split counts once finished (from the workload).")


# Locked once a pod of the run started (status.runStartedTime): until then a change replaces the waiting Job.
IMMUTABLE_AFTER_START = (
    "source", "columns", "prompts", "split", "images", "scheduling", "env", "envFrom", "extraVolumes",
)
# Locked once the Job exists (status.startTime): where its output lands is in status.outputs from then on.
IMMUTABLE_ONCE_JOB_EXISTS = ("bucket", "output")
