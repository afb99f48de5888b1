"""DatasetPrep: a CPU Job; status carries the split counts the workload reports."""

from __future__ import annotations

from typing import Any

from mmft_operator.api.datasetprep import DatasetPrepSpec
from mmft_operator.builders import datasetprep as builders
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import DatasetPrepReport
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload

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
        report = workload.kind_report(DatasetPrepReport, observed.report, f"{owner.namespace}/{owner.name}", "dataset")
        if report is not None and report.outputs is not None:
            # Where the pod says it wrote them (the same paths, as the pod sees the bucket).
            status["outputs"].update(report.outputs.model_dump(exclude_none=True))
        if report is not None and report.results is not None:
            status["results"] = report.results.model_dump()
        return status

    def success_message(self, observed: Observed) -> str:
        report = observed.report
        return report.message if report is not None and report.message else "the dataset is prepared"
