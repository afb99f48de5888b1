"""DatasetPrep: a CPU Job; status carries the split counts the workload reports."""

from __future__ import annotations

from typing import Any

from mmft_operator.api.datasetprep import DatasetPrepResults, DatasetPrepSpec, SplitCounts
from mmft_operator.builders import datasetprep as builders
from mmft_operator.builders.common import Owner
from mmft_operator.settings import OperatorSettings

from .engine import KindReconciler, Observed


class DatasetPrepReconciler(KindReconciler):
    kind = builders.KIND
    job_component = builders.COMPONENT

    def parse(self, spec: dict[str, Any]) -> DatasetPrepSpec:
        return DatasetPrepSpec.model_validate(spec)

    def children(
        self, owner: Owner, spec: DatasetPrepSpec, resolved: dict[str, str], settings: OperatorSettings
    ) -> list[dict]:
        return builders.build_children(owner, spec, settings)

    def extra_status(self, owner: Owner, spec: DatasetPrepSpec, observed: Observed) -> dict[str, Any]:
        status: dict[str, Any] = {"outputs": builders.output_paths(spec)}
        report = observed.report
        if report is not None and report.results:
            status["results"] = results_from_report(report.results).to_wire()
        return status

    def success_message(self, observed: Observed) -> str:
        report = observed.report
        return report.message if report is not None and report.message else "the dataset is prepared"


def results_from_report(results: dict[str, Any]) -> DatasetPrepResults:
    splits = {}
    for name, counts in (results.get("splits") or {}).items():
        images = int(counts.get("images", 0))
        positives = int(counts.get("positive", counts.get("positives", 0)))
        splits[name] = SplitCounts(
            images=images,
            positives=positives,
            negatives=int(counts.get("negative", counts.get("negatives", images - positives))),
            groups=int(counts.get("patients", counts.get("groups", 0))),
        )
    return DatasetPrepResults(
        images=sum(split.images for split in splits.values()),
        positives=sum(split.positives for split in splits.values()),
        dropped=int(results.get("dropped", 0)),
        splits=splits,
    )
