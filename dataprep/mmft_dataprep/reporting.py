"""Run the preparation and publish its phases and results through the workload report contract."""

from __future__ import annotations

import logging

from mmft_operator.contracts.progress import (
    DatasetPrepOutputs,
    DatasetPrepReport,
    DatasetPrepResults,
    SplitCounts,
)
from mmft_operator.contracts.report_writer import ReportWriter

from . import pipeline
from .errors import PrepError

log = logging.getLogger("mmft_dataprep")


class ReportingPhases(pipeline.Phases):
    def __init__(self, writer: ReportWriter) -> None:
        self.writer = writer
        self.phase = "Starting"

    def enter(self, phase: str, message: str) -> None:
        super().enter(phase, message)
        self.phase = phase
        self.writer.publish(DatasetPrepReport(phase=phase, message=message), force=True)

    def progress(self, message: str) -> None:
        self.writer.publish(DatasetPrepReport(phase=self.phase, message=message))


def run_and_report(build_options) -> int:
    writer = ReportWriter.from_environment()
    phases = ReportingPhases(writer)
    phases.enter("Starting", "validating arguments")
    try:
        result = pipeline.run(build_options(), phases)
    except PrepError as error:
        log.error("%s", error)
        writer.publish(DatasetPrepReport(phase="Failed", message=str(error)))
        return error.exit_code
    except Exception as error:
        writer.publish(DatasetPrepReport(phase="Failed", message=f"internal error: {type(error).__name__}: {error}"))
        raise
    writer.publish(DatasetPrepReport(
        phase="Completed",
        message=_summary(result.stats),
        outputs=DatasetPrepOutputs.model_validate(result.outputs),
        results=contract_results(result.stats),
    ))
    log.info("%s", _summary(result.stats))
    return 0


def contract_results(stats: dict) -> DatasetPrepResults:
    """The report contract's counts of a stats.json document (pipeline._stats), in the API's names."""
    splits = {
        name: SplitCounts(images=split["images"], positives=split["positive"], negatives=split["negative"],
                          groups=split["patients"], lines=split["lines"], linesPositive=split["linesPositive"])
        for name, split in stats["splits"].items()
    }
    return DatasetPrepResults.of_splits(splits, stats["dropped"]["byReason"])


def _summary(stats: dict) -> str:
    parts = [f"{name} {split['images']} ({split['positive']} positive, {split['patients']} patients)"
             for name, split in stats["splits"].items()]
    return f"prepared {'; '.join(parts)}; dropped {stats['dropped']['count']}"
