"""Progress and output contract between a workload pod and the operator.

The workload (trainer, dataprep, evaluator) writes a JSON document of :class:`WorkloadReport` to

* a local file (``MMFT_REPORT_FILE``; always, so a user can read it on the volume), and
* the data key :data:`REPORT_KEY` of the ConfigMap named by ``MMFT_REPORT_CONFIGMAP`` in ``MMFT_NAMESPACE``,
  when those variables are set. The operator creates that ConfigMap empty and a Role that lets the pod's
  ServiceAccount ``get``/``patch`` exactly that one ConfigMap, nothing else.

The operator watches the ConfigMap and copies ``progress`` into the owner's ``status.progress`` and ``outputs``
into ``status.outputs``. Field names are camelCase so they land in status unchanged.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_KEY = "report.json"
ENV_REPORT_FILE = "MMFT_REPORT_FILE"
ENV_REPORT_CONFIGMAP = "MMFT_REPORT_CONFIGMAP"
ENV_NAMESPACE = "MMFT_NAMESPACE"
ENV_REPORT_INTERVAL = "MMFT_REPORT_INTERVAL_SECONDS"
DEFAULT_REPORT_INTERVAL_SECONDS = 10.0

Phase = Literal["Starting", "Preflight", "Running", "Saving", "Exporting", "Completed", "Failed"]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


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


class ModelResult(_Contract):
    """One model's results on the test split: written by `mmft evaluate`, copied by the operator into the
    Evaluation's ``status.models[]`` (the API's ModelMetrics, whose wire names these fields carry)."""

    accuracy: float | None = Field(None, ge=0, le=1)
    balancedAccuracy: float | None = Field(None, ge=0, le=1)
    recall: float | None = Field(None, ge=0, le=1)
    specificity: float | None = Field(None, ge=0, le=1)
    precision: float | None = Field(None, ge=0, le=1)
    rocAuc: float | None = Field(None, ge=0, le=1)
    prAuc: float | None = Field(None, ge=0, le=1)
    threshold: float | None = Field(None, ge=0, le=1)
    error: str | None = None


class EvaluationResults(_Contract):
    """``WorkloadReport.results`` of an Evaluation."""

    models: dict[str, ModelResult] = Field(default_factory=dict, description="Results by model name.")
    best: str | None = Field(None, description="Model with the highest balanced accuracy.")

    @classmethod
    def from_report(cls, report: WorkloadReport) -> EvaluationResults | None:
        return cls.model_validate(report.results) if report.results else None

    def to_report(self) -> dict:
        return self.model_dump(exclude_none=True)


class WorkloadReport(_Contract):
    phase: Phase = "Starting"
    message: str | None = None
    updatedAt: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    progress: TrainingProgress | None = None
    outputs: dict[str, str] = Field(default_factory=dict, description="Named output URIs or paths.")
    results: dict | None = Field(
        None, description="Kind-specific results: split counts (dataprep), EvaluationResults (evaluator)."
    )

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, text: str) -> WorkloadReport:
        return cls.model_validate_json(text)
