"""Offline rendering of mmft resources into their children, shared by `mmft render` and golden-file tests."""

from __future__ import annotations

from typing import Any

from mmft_operator.api.common import API_VERSION
from mmft_operator.api.datasetprep import DatasetPrepSpec
from mmft_operator.api.evaluation import EvaluationSpec
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.builders import datasetprep, evaluation, finetunejob
from mmft_operator.builders.axolotl_config import DatasetPaths
from mmft_operator.builders.common import Owner
from mmft_operator.model_location import format_location
from mmft_operator.settings import OperatorSettings

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


class RenderError(ValueError):
    pass


def render_documents(
    documents: list[dict[str, Any]], namespace: str, settings: OperatorSettings | None = None
) -> list[dict[str, Any]]:
    settings = settings or OperatorSettings()
    preps: dict[str, DatasetPrepSpec] = {}
    jobs: dict[str, FineTuneJobSpec] = {}
    parsed = []
    for document in documents:
        if document.get("apiVersion") != API_VERSION:
            raise RenderError(
                f"{document.get('kind')} {document.get('metadata', {}).get('name')}: apiVersion must be {API_VERSION}"
            )
        kind, name = document.get("kind"), document.get("metadata", {}).get("name")
        owner = Owner(kind, name, document["metadata"].get("namespace", namespace), PLACEHOLDER_UID)
        if kind == "DatasetPrep":
            preps[name] = DatasetPrepSpec.model_validate(document["spec"])
            parsed.append((owner, preps[name]))
        elif kind == "FineTuneJob":
            jobs[name] = FineTuneJobSpec.model_validate(document["spec"])
            parsed.append((owner, jobs[name]))
        elif kind == "Evaluation":
            parsed.append((owner, EvaluationSpec.model_validate(document["spec"])))
        else:
            raise RenderError(f"unknown kind {kind!r}")

    children: list[dict[str, Any]] = []
    for owner, spec in parsed:
        if isinstance(spec, DatasetPrepSpec):
            children += datasetprep.build_children(owner, spec, settings)
        elif isinstance(spec, FineTuneJobSpec):
            split = _splits(spec.dataset.dataset_prep_ref, preps)
            paths = DatasetPaths(
                train=spec.dataset.train_path or split["trainJsonl"],
                validation=spec.dataset.validation_path or split.get("validationJsonl"),
            )
            children += finetunejob.build_children(owner, spec, paths, settings)
        else:
            split = _splits(spec.dataset.dataset_prep_ref, preps)
            data = evaluation.EvaluationData(
                test=spec.dataset.test_path or split["testJsonl"],
                validation=spec.dataset.validation_path or split.get("validationJsonl"),
            )
            models = [evaluation.ResolvedModel(m.name, _model_location(m, owner, jobs)) for m in spec.models]
            children += evaluation.build_children(owner, spec, models, data, settings)
    return children


def _splits(ref, preps: dict[str, DatasetPrepSpec]) -> dict[str, str]:  # noqa: ANN001 - LocalObjectReference
    if ref is None:
        return {}
    if ref.name in preps:
        return datasetprep.output_paths(preps[ref.name])
    placeholder = f"<outputs of DatasetPrep {ref.name}>"
    return {key: f"{placeholder}/{key}" for key in ("trainJsonl", "validationJsonl", "testJsonl")}


def _model_location(model, owner: Owner, jobs: dict[str, FineTuneJobSpec]) -> str:  # noqa: ANN001
    if model.hugging_face:
        return model.hugging_face
    ref = model.fine_tune_job_ref
    job = jobs.get(ref.name)
    if job is None:
        return f"<{ref.use} of FineTuneJob {ref.name}>"
    exported = finetunejob.export_locations(job, Owner("FineTuneJob", ref.name, owner.namespace, PLACEHOLDER_UID))
    if ref.use == "merged":
        return exported.get("mergedUri", f"<FineTuneJob {ref.name} exports no merged model>")
    return format_location(job.base_model, exported.get("adapterUri", f"<FineTuneJob {ref.name} exports no adapter>"))
