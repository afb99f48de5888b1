"""Offline rendering of mmft resources into their children, shared by `mmft render` and golden-file tests.

The operator's own planner (`reconcile.engine.plan_children`) decides the children: this module only builds the
world it would observe once every referenced resource has succeeded. A reference to a resource in the same
documents resolves to what that resource produces (a DatasetPrep's split paths, a FineTuneJob's exports); a
reference to anything else resolves to a placeholder naming it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mmft_operator.api.common import API_VERSION
from mmft_operator.api.datasetprep import DatasetPrepSpec
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.builders import datasetprep, finetunejob
from mmft_operator.builders.common import Owner
from mmft_operator.reconcile import engine
from mmft_operator.reconcile.engine import Reference, World
from mmft_operator.reconcile.kinds import RECONCILERS
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
# Conditions are not rendered; the planner needs a moment only to stamp them.
_RENDER_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class RenderError(ValueError):
    pass


def render_documents(
    documents: list[dict[str, Any]], namespace: str, settings: OperatorSettings | None = None
) -> list[dict[str, Any]]:
    settings = settings or OperatorSettings()
    bodies = []
    for document in documents:
        kind, name = document.get("kind"), document.get("metadata", {}).get("name")
        if document.get("apiVersion") != API_VERSION:
            raise RenderError(f"{kind} {name}: apiVersion must be {API_VERSION}")
        if kind not in RECONCILERS:
            raise RenderError(f"unknown kind {kind!r}")
        meta = {"name": name, "namespace": document["metadata"].get("namespace", namespace), "uid": PLACEHOLDER_UID,
                "generation": 1}
        bodies.append({"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": document.get("spec") or {}})
    in_documents = {(body["kind"], body["metadata"]["name"]): body for body in bodies}

    children: list[dict[str, Any]] = []
    for body in bodies:
        reconciler = RECONCILERS[body["kind"]]
        parsed = engine.parse(reconciler, body)
        if parsed.invalid is not None:
            raise parsed.invalid
        references = reconciler.references(parsed.spec)
        referenced = {ref: _succeeded(ref, in_documents.get((ref.kind, ref.name)), body) for ref in references}
        plan = engine.plan_children(reconciler, World(body, None, referenced, _RENDER_TIME, settings), parsed)
        waiting = next((p for p in plan.prerequisites if not p.ready), None)
        if waiting is not None:
            raise RenderError(f"{body['kind']} {body['metadata']['name']}: {waiting.reason}: {waiting.message}")
        children += plan.ensure
    return children


def _succeeded(ref: Reference, document: dict[str, Any] | None, referrer: dict[str, Any]) -> dict[str, Any]:
    """The referenced resource as the operator would read it once it has succeeded."""
    owner = Owner(ref.kind, ref.name, referrer["metadata"]["namespace"], PLACEHOLDER_UID)
    if ref.kind == "DatasetPrep":
        if document is None:  # outside the documents: on the referrer's bucket, its outputs a placeholder
            placeholder = f"<outputs of DatasetPrep {ref.name}>"
            spec = {"bucket": referrer["spec"].get("bucket") or {}}
            outputs = {key: f"{placeholder}/{key}" for key in ("trainJsonl", "validationJsonl", "testJsonl")}
        else:
            spec = document["spec"]
            outputs = datasetprep.output_paths(_parse(DatasetPrepSpec, document))
    else:
        if document is None:
            spec = {"baseModel": f"<baseModel of FineTuneJob {ref.name}>"}
            outputs = {f"{use}Uri": f"<{use} of FineTuneJob {ref.name}>" for use in ("adapter", "merged")}
        else:
            spec = document["spec"]
            outputs = finetunejob.export_locations(_parse(FineTuneJobSpec, document), owner)
    return {"apiVersion": API_VERSION, "kind": ref.kind, "metadata": {"name": ref.name}, "spec": spec,
            "status": {"phase": workload.SUCCEEDED, "outputs": outputs}}


def _parse(model, document: dict[str, Any]):  # noqa: ANN001, ANN202 - a spec model class and its instance
    return model.model_validate(document["spec"])
