"""Evaluation: waits for its dataset and the FineTuneJobs it compares, then scores every model on one GPU Job."""

from __future__ import annotations

from typing import Any

from mmft_operator.api.evaluation import EvaluationSpec
from mmft_operator.builders import evaluation as builders
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import EvaluationReport
from mmft_operator.model_location import format_location, parse_location
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload
from mmft_operator.training_defaults import MODEL_SHAPES, model_shape

from .engine import KindReconciler, Observed, Prerequisite, Reference, Referenced
from .finetunejob import dataset_prerequisite, dataset_references

MODEL_KEY_PREFIX = "model."
# The size class of each model ("4B", "12B", "27B"), which sizes the evaluation pod's disk.
MODEL_SIZE_KEY_PREFIX = "modelSize."


class EvaluationReconciler(KindReconciler):
    kind = builders.KIND
    job_component = builders.COMPONENT
    # The evaluator halves a batch that does not fit before it gives up, so a smaller card is the likelier cause.
    out_of_memory_advice = "lower spec.batchSize, or choose an accelerator with more memory (spec.compute.accelerator)"

    def parse(self, spec: dict[str, Any]) -> EvaluationSpec:
        return EvaluationSpec.model_validate(spec)

    def references(self, spec: EvaluationSpec) -> list[Reference]:
        models = [Reference("FineTuneJob", m.fine_tune_job_ref.name) for m in spec.models if m.fine_tune_job_ref]
        return dataset_references(spec) + models

    def prerequisites(self, owner: Owner, spec: EvaluationSpec, referenced: Referenced) -> list[Prerequisite]:
        return [dataset_prerequisite(spec, referenced), models_prerequisite(spec, referenced)]

    def children(
        self, owner: Owner, spec: EvaluationSpec, resolved: dict[str, str], settings: OperatorSettings
    ) -> list[dict]:
        models = [resolved_model(m.name, resolved) for m in spec.models]
        data = builders.EvaluationData(test=resolved["testJsonl"], validation=resolved.get("validationJsonl"))
        return builders.build_children(owner, spec, models, data, settings)

    def extra_status(self, owner: Owner, spec: EvaluationSpec, observed: Observed) -> dict[str, Any]:
        status: dict[str, Any] = {"outputs": builders.output_paths(spec)}
        where = f"{owner.namespace}/{owner.name}"
        report = workload.kind_report(EvaluationReport, observed.report, where, "evaluation")
        if report is None:
            return status
        if report.progress is not None:
            progress = report.progress.model_dump(exclude_none=True)
            progress["summary"] = workload.progress_summary(report.progress.scored, report.progress.total)
            status["progress"] = progress
        if report.outputs is not None:
            written = report.outputs.model_dump(exclude_none=True)
            status["outputs"].update({key: builders.gcs_uri(spec, value) for key, value in written.items()})
        results = report.results
        if results is None:
            return status
        metrics = [{"name": name, **result.model_dump(exclude_none=True)} for name, result in results.models.items()]
        status["models"] = metrics
        scored = [m for m in metrics if m.get("balancedAccuracy") is not None]
        if scored:
            # The evaluator's choice (balanced accuracy, ties broken by ROC AUC) where it names a scored model.
            named = [m for m in scored if m["name"] == results.best]
            best = named[0] if named else max(scored, key=lambda m: m["balancedAccuracy"])
            status["bestModel"] = best["name"]
            status["bestBalancedAccuracy"] = best["balancedAccuracy"]
        status["report"] = status["outputs"].get("report")
        status["predictions"] = status["outputs"].get("predictions")
        status["consoleUrl"] = builders.console_url(status["report"] or "")
        return {key: value for key, value in status.items() if value is not None}

    def success_message(self, observed: Observed) -> str:
        return "all models scored; see status.models and the report"


def resolved_model(name: str, resolved: dict[str, str]) -> builders.ResolvedModel:
    location = resolved[MODEL_KEY_PREFIX + name]
    size = resolved.get(MODEL_SIZE_KEY_PREFIX + name)
    # A status an earlier operator wrote has no size: read it from the location's name, as for a Hugging Face id.
    shape = MODEL_SHAPES[size] if size in MODEL_SHAPES else model_shape(parse_location(location).model, None)
    return builders.ResolvedModel(name, location, shape)


def models_prerequisite(spec: EvaluationSpec, referenced: Referenced) -> Prerequisite:
    resolved: dict[str, str] = {}
    waiting: list[str] = []
    for model in spec.models:
        if model.hugging_face is not None:
            resolved[MODEL_KEY_PREFIX + model.name] = model.hugging_face
            resolved[MODEL_SIZE_KEY_PREFIX + model.name] = model_shape(model.hugging_face, None).name
            continue
        ref = model.fine_tune_job_ref
        job = referenced.get(Reference("FineTuneJob", ref.name))
        if job is None:
            waiting.append(f"FineTuneJob {ref.name} does not exist yet")
            continue
        status = job.get("status") or {}
        if status.get("phase") == workload.FAILED:
            return Prerequisite(
                "ModelsReady",
                False,
                "ModelFailed",
                f"FineTuneJob {ref.name} failed ({status.get('reason')}); model {model.name} cannot be scored",
                stalled=True,
            )
        if status.get("phase") != workload.SUCCEEDED:
            waiting.append(f"FineTuneJob {ref.name} is {status.get('phase') or 'Pending'}")
            continue
        outputs = status.get("outputs") or {}
        if ref.use == "merged":
            location = outputs.get("mergedUri")
        else:
            location = outputs.get("adapterUri") and format_location(job["spec"]["baseModel"], outputs["adapterUri"])
        if not location:
            return Prerequisite(
                "ModelsReady",
                False,
                "ModelNotExported",
                f"FineTuneJob {ref.name} has no {ref.use} export; set its spec.export.format",
                stalled=True,
            )
        resolved[MODEL_KEY_PREFIX + model.name] = location
        job_spec = job.get("spec") or {}
        resolved[MODEL_SIZE_KEY_PREFIX + model.name] = model_shape(
            job_spec.get("baseModel", ""), job_spec.get("baseModelSize")
        ).name
    if waiting:
        return Prerequisite("ModelsReady", False, "WaitingForModels", "; ".join(waiting))
    return Prerequisite(
        "ModelsReady", True, "ModelsResolved", f"{len(spec.models)} model(s) resolved", resolved=resolved
    )
