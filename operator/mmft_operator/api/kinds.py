"""The three kinds of mmft.io: their models, names and how kubectl shows them."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from . import datasetprep, evaluation, finetunejob
from .common import GROUP

CATEGORY = "mmft"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_crd(self) -> dict:
        column = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    immutable_after_start: tuple[str, ...]  # locked once a pod of the run started (status.runStartedTime)
    immutable_once_job_exists: tuple[str, ...]  # locked once the workload Job exists (status.startTime)
    printer_columns: tuple[PrinterColumn, ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


_PHASE = PrinterColumn("Status", ".status.phase", description="Summary of the conditions.")
_REASON = PrinterColumn("Reason", ".status.reason", description="Why the resource is in this phase.")
_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")

FINE_TUNE_JOB = KindInfo(
    kind="FineTuneJob",
    plural="finetunejobs",
    short_names=("ftj",),
    description="FineTuneJob fine-tunes a multimodal model with Axolotl on GKE Autopilot GPUs.",
    spec_model=finetunejob.FineTuneJobSpec,
    status_model=finetunejob.FineTuneJobStatus,
    immutable_after_start=finetunejob.IMMUTABLE_AFTER_START,
    immutable_once_job_exists=finetunejob.IMMUTABLE_ONCE_JOB_EXISTS,
    printer_columns=(
        _PHASE,
        _REASON,
        PrinterColumn("Progress", ".status.progress.summary", description="Optimizer steps done of total."),
        PrinterColumn("Loss", ".status.progress.loss", type="number", description="Training loss."),
        PrinterColumn("ETA", ".status.progress.etaSeconds", type="integer", description="Seconds left.", priority=1),
        PrinterColumn(
            "Tokens/s", ".status.progress.tokensPerSecond", type="number", description="Training throughput.",
            priority=1,
        ),
        PrinterColumn(
            "Peak GPU GiB", ".status.progress.peakGpuMemoryGiB", type="number", description="Peak GPU memory.",
            priority=1,
        ),
        PrinterColumn("Model", ".spec.baseModel", description="Base model."),
        PrinterColumn("Accelerator", ".spec.compute.accelerator", description="GKE accelerator type."),
        PrinterColumn("GPUs", ".spec.compute.gpusPerNode", type="integer", description="GPUs per node.", priority=1),
        PrinterColumn("Nodes", ".spec.compute.nodes", type="integer", description="Nodes.", priority=1),
        _AGE,
    ),
)

DATASET_PREP = KindInfo(
    kind="DatasetPrep",
    plural="datasetpreps",
    short_names=("dsp",),
    description="DatasetPrep turns raw images and a label CSV into chat_template JSONL splits.",
    spec_model=datasetprep.DatasetPrepSpec,
    status_model=datasetprep.DatasetPrepStatus,
    immutable_after_start=datasetprep.IMMUTABLE_AFTER_START,
    immutable_once_job_exists=datasetprep.IMMUTABLE_ONCE_JOB_EXISTS,
    printer_columns=(
        _PHASE,
        _REASON,
        PrinterColumn("Images", ".status.results.images", type="integer", description="Images written."),
        PrinterColumn("Positives", ".status.results.positives", type="integer", description="Positive images."),
        PrinterColumn("Dropped", ".status.results.dropped", type="integer", description="Rows dropped.", priority=1),
        PrinterColumn("Output", ".spec.output.path", description="Output directory in the bucket.", priority=1),
        _AGE,
    ),
)

EVALUATION = KindInfo(
    kind="Evaluation",
    plural="evaluations",
    short_names=("mmeval",),
    description="Evaluation scores base, tuned and other models on a test split and writes a comparison report.",
    spec_model=evaluation.EvaluationSpec,
    status_model=evaluation.EvaluationStatus,
    immutable_after_start=evaluation.IMMUTABLE_AFTER_START,
    immutable_once_job_exists=evaluation.IMMUTABLE_ONCE_JOB_EXISTS,
    printer_columns=(
        _PHASE,
        _REASON,
        PrinterColumn(
            "Progress", ".status.progress.summary", description="Images scored of all models' total.", priority=1
        ),
        PrinterColumn("Best", ".status.bestModel", description="Model with the best balanced accuracy."),
        PrinterColumn(
            "BalancedAcc",
            ".status.bestBalancedAccuracy",
            type="number",
            description="Balanced accuracy of the best model.",
        ),
        PrinterColumn("Report", ".status.report", description="gs:// URI of the HTML report.", priority=1),
        _AGE,
    ),
)

ALL_KINDS: tuple[KindInfo, ...] = (DATASET_PREP, FINE_TUNE_JOB, EVALUATION)
BY_KIND = {info.kind: info for info in ALL_KINDS}
