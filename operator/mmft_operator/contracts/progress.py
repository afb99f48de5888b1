"""Progress and output contract between a workload pod and the operator: one typed report per kind.

The workload (trainer, dataprep, evaluator) writes a JSON document of its kind's report model
(:class:`DatasetPrepReport`, :class:`TrainingReport`, :class:`EvaluationReport`) to

* a local file (``MMFT_REPORT_FILE``; always, so a user can read it on the volume), and
* the data key :data:`REPORT_KEY` of the ConfigMap named by ``MMFT_REPORT_CONFIGMAP`` in ``MMFT_NAMESPACE``,
  when those variables are set. The operator creates that ConfigMap empty and a Role that lets the pod's
  ServiceAccount ``get``/``patch`` exactly that one ConfigMap, nothing else.

The operator reads the envelope (:class:`WorkloadReport`: phase, message) for every kind and the kind's parts
(progress, outputs, results) through the same model the workload wrote, and copies them into the owner's status.
Field names are camelCase and the status models of the API reuse these models, so they land in status unchanged.
Every model rejects unknown fields: a workload cannot write a field the operator does not read.
"""

from __future__ import annotations

import datetime as dt
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

REPORT_KEY = "report.json"
ENV_REPORT_FILE = "MMFT_REPORT_FILE"
ENV_REPORT_CONFIGMAP = "MMFT_REPORT_CONFIGMAP"
ENV_NAMESPACE = "MMFT_NAMESPACE"
ENV_REPORT_INTERVAL = "MMFT_REPORT_INTERVAL_SECONDS"
# The UID of the Job whose pod writes the report (downward API: the Job controller's label on its pods), so that the
# operator never reads a report of an earlier Job of the same name (a failed attempt, a Job deleted by hand).
ENV_JOB_UID = "MMFT_JOB_UID"
DEFAULT_REPORT_INTERVAL_SECONDS = 10.0

Phase = Literal["Starting", "Preflight", "Running", "Saving", "Exporting", "Completed", "Failed"]


class _Contract(BaseModel):
    # Exact both ways: a misspelt or unread field fails where it is written, not silently in status.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainingProgress(_Contract):
    step: int = Field(0, ge=0, description="Optimizer steps completed.")
    totalSteps: int | None = Field(None, ge=0, description="Optimizer steps the run will take.")
    epoch: float | None = Field(None, ge=0, description="Fractional epoch reached.")
    loss: float | None = Field(None, description="Training loss at the last logging step.")
    learningRate: float | None = Field(None, ge=0, description="Learning rate at the last logging step.")
    samplesPerSecond: float | None = Field(None, ge=0, description="Training throughput, samples per second.")
    etaSeconds: int | None = Field(None, ge=0, description="Estimated seconds until the last step.")
    tokensPerSecond: float | None = Field(
        None, ge=0, description="Input tokens (image and text, padding included) trained on per second, all GPUs."
    )
    peakGpuMemoryGiB: float | None = Field(
        None, ge=0, description="Peak GPU memory allocated by the trainer on one GPU so far (rank 0), GiB."
    )
    modelLoadSeconds: float | None = Field(
        None, ge=0, description="Seconds from the trainer's start to training: preflight, model and data loading."
    )
    firstStepSeconds: float | None = Field(
        None, ge=0, description="Seconds the first optimizer step took (compilation and data loader warm-up)."
    )
    lastCheckpoint: str | None = Field(None, description="Path of the newest complete checkpoint.")


class TrainingOutputs(_Contract):
    """Where the trainer put what it made: ``WorkloadReport.outputs`` of a FineTuneJob, copied into
    ``status.outputs`` (the operator adds the locations it chose itself)."""

    outputDir: str | None = Field(
        None,
        description="Checkpoint directory in the trainer pod: on the output volume for one node, on the bucket's "
        "GCS Fuse mount (<mountPath>/mmft/<namespace>/<name>/run) for several.",
    )
    tensorboardDir: str | None = Field(None, description="Directory the trainer syncs TensorBoard event files to.")
    adapterUri: str | None = Field(None, description="gs:// URI of the exported LoRA adapter.")
    mergedUri: str | None = Field(None, description="gs:// URI of the exported merged model.")


class SplitCounts(_Contract):
    """Counts of one split."""

    images: int = Field(0, ge=0, description="Images in the split.")
    positives: int = Field(0, ge=0, description="Positive images.")
    negatives: int = Field(0, ge=0, description="Negative images.")
    groups: int = Field(0, ge=0, description="Distinct groups (patients).")
    lines: int = Field(0, ge=0, description="JSONL lines written (train: after balancing; else equal to images).")
    linesPositive: int = Field(0, ge=0, description="Positive JSONL lines written (after balancing).")


class DatasetPrepResults(_Contract):
    """What the data preparation produced: ``WorkloadReport.results`` of a DatasetPrep and its ``status.results``."""

    images: int = Field(0, ge=0, description="Images written across all splits.")
    positives: int = Field(0, ge=0, description="Positive images across all splits.")
    dropped: int = Field(0, ge=0, description="Rows dropped (missing, corrupt, duplicate); see stats.json.")
    droppedByReason: dict[str, int] = Field(
        default_factory=dict, description="Rows dropped by reason (missing_file, corrupt, duplicate_row, ...)."
    )
    splits: dict[str, SplitCounts] = Field(default_factory=dict, description="Counts per split.")

    @classmethod
    def of_splits(cls, splits: dict[str, SplitCounts], dropped_by_reason: dict[str, int]) -> DatasetPrepResults:
        """The totals follow from the splits and the reasons, so they are computed here and nowhere else."""
        return cls(
            images=sum(split.images for split in splits.values()),
            positives=sum(split.positives for split in splits.values()),
            dropped=sum(dropped_by_reason.values()),
            droppedByReason=dropped_by_reason,
            splits=splits,
        )


class DatasetPrepOutputs(_Contract):
    """Where the preparation wrote its files (paths in the prep pod, which mounts the bucket as the trainer does)."""

    trainJsonl: str | None = Field(None, description="Training split, chat_template JSONL.")
    validationJsonl: str | None = Field(None, description="Validation split (threshold tuning), JSONL.")
    testJsonl: str | None = Field(None, description="Held-out test split, JSONL.")
    statsJson: str | None = Field(None, description="Counts, drop reasons and settings of the run.")
    imagesDir: str | None = Field(None, description="Processed images, as the training pod sees them.")


class ScoringProgress(_Contract):
    """Live progress of `mmft evaluate`: ``WorkloadReport.progress`` of an Evaluation."""

    model: str | None = Field(None, description="Model being scored.")
    scored: int = Field(0, ge=0, description="Images scored so far, over all models and splits.")
    total: int | None = Field(None, ge=0, description="Images to score over all models and splits.")
    imagesPerSecond: float | None = Field(None, ge=0, description="Scoring throughput of the split at hand.")
    etaSeconds: int | None = Field(None, ge=0, description="Estimated seconds until the split at hand is scored.")


class ModelResult(_Contract):
    """One model's results on the test split: written by `mmft evaluate`, copied by the operator into the
    Evaluation's ``status.models[]``."""

    accuracy: float | None = Field(None, ge=0, le=1, description="Accuracy.")
    balancedAccuracy: float | None = Field(None, ge=0, le=1, description="Mean of recall and specificity.")
    recall: float | None = Field(None, ge=0, le=1, description="Sensitivity: true positives / positives.")
    specificity: float | None = Field(None, ge=0, le=1, description="True negatives / negatives.")
    precision: float | None = Field(None, ge=0, le=1, description="True positives / predicted positives.")
    rocAuc: float | None = Field(
        None, ge=0, le=1, description="Area under the ROC curve (logprob, forced-choice)."
    )
    prAuc: float | None = Field(
        None, ge=0, le=1, description="Area under the precision-recall curve (logprob, forced-choice)."
    )
    threshold: float | None = Field(None, ge=0, le=1, description="Decision threshold used.")
    error: str | None = Field(None, description="Why this model could not be scored.")


class EvaluationResults(_Contract):
    """``WorkloadReport.results`` of an Evaluation."""

    models: dict[str, ModelResult] = Field(default_factory=dict, description="Results by model name.")
    best: str | None = Field(None, description="Model with the highest balanced accuracy (ties: ROC AUC).")


class EvaluationOutputs(_Contract):
    """Where the evaluator wrote its files: bucket-mount paths, or gs:// URIs when it uploaded them."""

    report: str | None = Field(None, description="The HTML report.")
    metrics: str | None = Field(None, description="metrics.json: every metric and setting per model.")
    predictions: str | None = Field(None, description="Predictions, JSON lines, one per image and model.")


ProgressT = TypeVar("ProgressT")
OutputsT = TypeVar("OutputsT")
ResultsT = TypeVar("ResultsT")


class WorkloadReport(_Contract, Generic[ProgressT, OutputsT, ResultsT]):
    """The envelope every kind's report shares. Read unparametrized (as the operator's engine does for every kind)
    the kind's parts stay plain JSON; the kind's own report model (below) types them."""

    phase: Phase = "Starting"
    message: str | None = None
    jobUid: str | None = Field(None, description="UID of the Job whose pod wrote this report (absent: not known).")
    updatedAt: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    progress: ProgressT | None = None
    outputs: OutputsT | None = None
    results: ResultsT | None = None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, text: str):  # noqa: ANN206 - the class it is called on
        return cls.model_validate_json(text)

    @classmethod
    def from_report(cls, report: WorkloadReport):  # noqa: ANN206 - the class it is called on
        """This kind's typed report of an envelope read without knowing the kind (ValidationError if it is not
        one)."""
        if isinstance(report, cls):
            return report
        return cls.model_validate(report.model_dump(mode="json", exclude_none=True))


class DatasetPrepReport(WorkloadReport[None, DatasetPrepOutputs, DatasetPrepResults]):
    """What `mmft dataprep` reports: phases and a message while it runs (no progress fields), then outputs and
    counts."""


class TrainingReport(WorkloadReport[TrainingProgress, TrainingOutputs, None]):
    """What `mmft train` reports: progress at every step, outputs as they are made."""


class EvaluationReport(WorkloadReport[ScoringProgress, EvaluationOutputs, EvaluationResults]):
    """What `mmft evaluate` reports: scoring progress, then outputs and each model's results."""
