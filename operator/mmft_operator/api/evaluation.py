"""Evaluation: base, tuned and other models scored on a DatasetPrep's test split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mmft_operator.accelerators import DEFAULT_ACCELERATOR
from mmft_operator.contracts.progress import EvaluationOutputs, ModelResult, ScoringProgress
from mmft_operator.seed_prompts import SEED_PROMPTS

from .common import (
    ABSOLUTE_PATH_PATTERN,
    DNS_LABEL_PATTERN,
    GCS_URI_PATTERN,
    Accelerator,
    ApiModel,
    CommonStatus,
    GcsBucket,
    LocalObjectReference,
    ProvisioningChoice,
    SecretKeySelector,
    WorkloadJobSettings,
    WorkloadResources,
    cel,
    check_flex_start_deadline,
    flex_start_deadline_rule,
    provisioning_rules,
    validations,
)
from .pod_hatches import PodHatches, pod_hatch_rules


class EvaluationDataset(ApiModel):
    """The labelled data to score: a DatasetPrep (its test and validation splits) or JSONL paths."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel("has(self.datasetPrepRef) != has(self.testPath)", "set exactly one of datasetPrepRef or testPath"),
            cel(
                "!has(self.validationPath) || has(self.testPath)",
                "validationPath goes with testPath; a DatasetPrep provides its own validation split",
                field_path=".validationPath",
            ),
        )
    }

    dataset_prep_ref: LocalObjectReference | None = Field(
        None, description="A DatasetPrep; its test split is scored and its validation split picks the threshold."
    )
    test_path: str | None = Field(
        None, description="Test JSONL path inside the pod.", pattern=ABSOLUTE_PATH_PATTERN, max_length=1024
    )
    validation_path: str | None = Field(
        None,
        description="Validation JSONL path inside the pod (threshold tuning).",
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=1024,
    )


class FineTuneJobModelRef(LocalObjectReference):
    """A FineTuneJob's result: its base model plus its adapter, or its merged export."""

    use: Literal["adapter", "merged"] = Field(
        "adapter", description="adapter: base model + LoRA adapter; merged: the merged export (needs export merged)."
    )


class ModelUnderTest(ApiModel):
    """One model of the comparison."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.huggingFace) != has(self.fineTuneJobRef)", "set exactly one of huggingFace or fineTuneJobRef"
            ),
        )
    }

    name: str = Field(
        description="Short name shown in the report (e.g. base, tuned, medgemma).",
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
    )
    hugging_face: str | None = Field(
        None,
        description="Hugging Face model id (e.g. google/medgemma-4b-it) or an absolute path inside the pod.",
        pattern=r"^(/[^\x00]+|[A-Za-z0-9][\w.-]*/[\w.-]+)$",
        max_length=512,
    )
    fine_tune_job_ref: FineTuneJobModelRef | None = Field(
        None, description="A FineTuneJob in this namespace; the evaluation waits until it has Succeeded."
    )


class ScoringSettings(ApiModel):
    """How a model's answer becomes a score."""

    method: Literal["logprob", "forced-choice", "generate"] = Field(
        "logprob",
        description="logprob: one batched forward pass, score = P(positive answer's first token); gives ROC/PR "
        "curves. forced-choice: score = P(whole positive answer) against P(whole negative answer), the prompt "
        "computed once for both; right for models that explain before they answer (MedGemma), ~2% slower than "
        "logprob on an H200; gives ROC/PR curves. generate: the seed's free-text answers (batched) parsed with a "
        "regex, for comparison with published numbers.",
    )
    positive_answer: str = Field(
        SEED_PROMPTS.positive_answer, description="Positive answer text.", min_length=1, max_length=4096
    )
    negative_answer: str = Field(
        SEED_PROMPTS.negative_answer, description="Negative answer text.", min_length=1, max_length=4096
    )
    max_new_tokens: int = Field(500, description="Token budget per answer (generate only).", ge=1, le=8192)
    batch_size: int | None = Field(
        None,
        description="Images per forward pass. Empty: the evaluator's default (64); any size is halved automatically "
        "while a batch does not fit in GPU memory.",
        ge=1,
        le=1024,
    )
    compile: Literal["Auto", "Off", "Vision", "VisionAndLanguage"] = Field(
        "Auto",
        description="torch.compile for logprob and forced-choice scoring. Auto: the vision tower and language "
        "model, on a GPU, when a model scores at least 12,000 images (where the ~1 minute compile pays off), else Off. "
        "On an H200 the compiled model scores 58 instead of 45 images/s.",
    )
    compile_mode: Literal["Default", "MaxAutotune"] = Field(
        "Default",
        description="MaxAutotune benchmarks kernels while compiling: ~7% faster (63 images/s on an H200), ~5 "
        "minutes longer to compile; with compileCachePath set, later Evaluations reuse the tuned kernels.",
    )
    compile_cache_path: str | None = Field(
        None,
        description="Directory under the bucket mount that keeps compiled kernels between Evaluations "
        "(TORCHINDUCTOR_CACHE_DIR), e.g. .mmft/compile-cache. Empty: every run compiles anew.",
        pattern=r"^[^/\x00][^\x00]*$",
        max_length=1024,
    )


class ThresholdPolicy(ApiModel):
    """How the decision threshold on the score is chosen (logprob and forced-choice)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.policy != 'TargetRecall' || has(self.targetRecall)",
                "policy TargetRecall needs targetRecall",
                field_path=".targetRecall",
            ),
        )
    }

    policy: Literal["Fixed", "MaxBalancedAccuracy", "TargetRecall"] = Field(
        "MaxBalancedAccuracy",
        description="Fixed: use value. MaxBalancedAccuracy or TargetRecall: chosen on the validation split.",
    )
    value: float = Field(0.5, description="Threshold for policy Fixed.", ge=0, le=1)
    target_recall: float | None = Field(None, description="Recall to reach for policy TargetRecall.", gt=0, le=1)


class EvaluationCompute(WorkloadResources, ProvisioningChoice):
    """GPU for the evaluation pod."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.gpus != 0 || (has(self.cpu) && has(self.memory))",
                "gpus 0 (no GPU) needs cpu and memory: there is no accelerator to size the pod from",
                field_path=".gpus",
            ),
            *provisioning_rules("gpus"),
        )
    }

    accelerator: Accelerator = Field(DEFAULT_ACCELERATOR, description="GKE accelerator type.")
    gpus: Literal[0, 1, 2, 4, 8] = Field(
        1,
        description="GPUs for the evaluation pod. 0: no GPU, the CPU of a general-purpose node (toy models, tests, "
        "the local cluster's real node); accelerator is then ignored and cpu and memory are required.",
    )

    @model_validator(mode="after")
    def _flex_start_needs_gpus(self) -> EvaluationCompute:
        self.check_flex_start_has_gpus(self.gpus, "gpus")
        return self


class EvaluationSpec(WorkloadJobSettings, PodHatches):
    """Desired state of an Evaluation. Locked once its first pod runs; its inputs once the Job exists."""

    model_config = PodHatches.model_config | {
        "json_schema_extra": validations(*pod_hatch_rules(), flex_start_deadline_rule())
    }

    dataset: EvaluationDataset = Field(description="Labelled data to score.")
    models: list[ModelUnderTest] = Field(
        description="Models to compare (names unique).",
        min_length=1,
        max_length=10,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    scoring: ScoringSettings = Field(default_factory=ScoringSettings, description="Scoring method.")
    threshold: ThresholdPolicy = Field(default_factory=ThresholdPolicy, description="Decision threshold policy.")
    bucket: GcsBucket = Field(description="Cloud Storage bucket mounted with GCS Fuse.")
    output_path: str = Field(
        description="Report directory under the bucket mount, e.g. evaluations/melanoma.",
        pattern=r"^[^/\x00][^\x00]*$",
        max_length=1024,
    )
    output_uri: str | None = Field(
        None, description="Also upload the report to this gs:// URI.", pattern=GCS_URI_PATTERN, max_length=1024
    )
    compute: EvaluationCompute = Field(default_factory=EvaluationCompute, description="Accelerator and resources.")
    hugging_face_token_secret_ref: SecretKeySelector | None = Field(
        None, description="Secret holding a Hugging Face token (gated models). Passed as HF_TOKEN."
    )

    @model_validator(mode="after")
    def _flex_start_deadline(self) -> EvaluationSpec:
        check_flex_start_deadline(self.compute.provisioning_model, self.active_deadline_seconds)
        return self


class ModelMetrics(ModelResult):
    """Metrics of one model on the test split, as the evaluator reported them."""

    name: str = Field(description="Model name from spec.models.")


class EvaluationProgress(ScoringProgress):
    """Live scoring progress, reported by the evaluator."""

    summary: str | None = Field(None, description="scored/total (percent), for printer columns.")


class EvaluationStatus(CommonStatus):
    """Observed state of an Evaluation."""

    outputs: EvaluationOutputs = Field(
        default_factory=EvaluationOutputs, description="gs:// URIs of the report, metrics and predictions."
    )
    progress: EvaluationProgress | None = Field(None, description="Live progress from the evaluator.")
    models: list[ModelMetrics] = Field(default_factory=list, description="Metrics per model.")
    best_model: str | None = Field(None, description="Model with the highest balanced accuracy.")
    best_balanced_accuracy: float | None = Field(
        None, description="Balanced accuracy of the best model.", ge=0, le=1
    )
    report: str | None = Field(None, description="gs:// URI of the HTML report.")
    predictions: str | None = Field(
        None, description="gs:// URI of the predictions (JSON lines, one per image and model)."
    )
    console_url: str | None = Field(
        None, description="Google Cloud console page of the folder holding the report, metrics and predictions."
    )


# Locked once a pod of the run started (status.runStartedTime): until then a change replaces the waiting Job.
IMMUTABLE_AFTER_START = ("scoring", "threshold", "compute", "scheduling", "env", "envFrom", "extraVolumes")
# Locked once the Job exists (status.startTime): the dataset and models were resolved with them.
IMMUTABLE_ONCE_JOB_EXISTS = ("dataset", "models", "bucket", "outputPath", "outputUri")
