"""FineTuneJob: waits for its dataset, then runs the trainer; status carries live progress from the trainer."""

from __future__ import annotations

from typing import Any

from mmft_operator import naming
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.builders import finetunejob as builders
from mmft_operator.builders.axolotl_config import DatasetPaths
from mmft_operator.builders.common import Owner
from mmft_operator.contracts.progress import TrainingReport
from mmft_operator.settings import OperatorSettings
from mmft_operator.status import workload
from mmft_operator.status.conditions import ConditionUpdate

from .engine import KindReconciler, Observed, Prerequisite, Reference, Referenced, RetainedAfterRun, World

_PAST_PREFLIGHT = {"Running", "Saving", "Exporting", "Completed"}
TENSORBOARD_CONDITION = "TensorBoardAvailable"


class FineTuneJobReconciler(KindReconciler):
    kind = builders.KIND
    job_component = "train"
    out_of_memory_advice = (
        "lower spec.training.microBatchSize or spec.training.sequenceLen, or set "
        "spec.training.gradientCheckpointing: true"
    )
    # The rendezvous Service (only with several nodes) and the TensorBoard Deployment and Service (only while
    # enabled and within its TTL after the run) can leave the desired set; every other child always stays.
    removable_kinds = (("v1", "Service"), ("apps/v1", "Deployment"))

    def parse(self, spec: dict[str, Any]) -> FineTuneJobSpec:
        return FineTuneJobSpec.model_validate(spec)

    def references(self, spec: FineTuneJobSpec) -> list[Reference]:
        return dataset_references(spec)

    def prerequisites(self, owner: Owner, spec: FineTuneJobSpec, referenced: Referenced) -> list[Prerequisite]:
        return [dataset_prerequisite(spec, referenced)]

    def children(
        self, owner: Owner, spec: FineTuneJobSpec, resolved: dict[str, str], settings: OperatorSettings
    ) -> list[dict]:
        paths = DatasetPaths(train=resolved["trainJsonl"], validation=resolved.get("validationJsonl"))
        return builders.build_children(owner, spec, paths, settings)

    retention_status_key = "tensorboard"

    def retained_after_run(self, spec: FineTuneJobSpec, settings: OperatorSettings) -> RetainedAfterRun | None:
        tensorboard = spec.tensorboard
        if not tensorboard.enabled:
            return None
        ttl = tensorboard.ttl_seconds_after_finished
        return RetainedAfterRun(
            component=builders.TENSORBOARD,
            ttl_seconds=settings.tensorboard_ttl_seconds_after_finished if ttl is None else ttl,
            status_key=self.retention_status_key,
        )

    def desired_suspend(self, spec: FineTuneJobSpec) -> bool | None:
        return None if spec.queue_name else spec.suspend

    def extra_conditions(self, observed: Observed) -> list[ConditionUpdate]:
        verdict, report = observed.verdict, observed.report
        if verdict.reason == "ConfigInvalid":
            return [ConditionUpdate("ConfigValid", False, "ConfigInvalid", verdict.message)]
        if verdict.phase == workload.SUCCEEDED or (report is not None and report.phase in _PAST_PREFLIGHT):
            return [
                ConditionUpdate(
                    "ConfigValid", True, "PreflightPassed", "the trainer validated the Axolotl config against the model"
                )
            ]
        return [
            ConditionUpdate("ConfigValid", None, "PreflightPending", "the trainer validates the config when it starts")
        ]

    def extra_status(self, owner: Owner, spec: FineTuneJobSpec, observed: Observed) -> dict[str, Any]:
        outputs = {
            "exportUri": builders.export_uri(spec, owner),
            "tensorboardDir": builders.tensorboard_dir(spec, owner),
            "outputDir": builders.checkpoint_dir(spec, owner),
        }
        if spec.compute.nodes == 1:  # several nodes have no claim: their checkpoints are on the bucket
            outputs["checkpointVolume"] = naming.output_pvc(owner.name)
        status: dict[str, Any] = {
            "preemptions": observed.verdict.preemptions,
            "failures": observed.verdict.failures,
            "outputs": outputs,
        }
        if observed.verdict.phase == workload.SUCCEEDED:
            # The trainer uploads to these locations before it exits 0; its report, when readable, confirms them.
            outputs.update(builders.export_locations(spec, owner))
        startup = workload.pod_startup(observed.pods, builders.TRAINER_CONTAINER)
        report = workload.kind_report(TrainingReport, observed.report, f"{owner.namespace}/{owner.name}", "training")
        if report is not None and report.outputs is not None:
            outputs.update(report.outputs.model_dump(exclude_none=True))
        if report is not None and report.progress is not None:
            progress = report.progress.model_dump(exclude_none=True)
            progress["summary"] = workload.progress_summary(report.progress.step, report.progress.totalSteps)
            status["progress"] = progress
            for stage, reported in (("loadingModelSeconds", report.progress.modelLoadSeconds),
                                    ("firstStepSeconds", report.progress.firstStepSeconds)):
                if reported is not None:
                    startup[stage] = reported
        if startup:
            status["startup"] = startup
        return status

    def child_conditions(
        self, owner: Owner, spec: FineTuneJobSpec, world: World, retired: bool
    ) -> dict[str, ConditionUpdate | None]:
        if not spec.tensorboard.enabled or retired:
            # Off, or removed after the run by design (status.tensorboard says when): nothing to be available.
            return {TENSORBOARD_CONDITION: None}
        return {TENSORBOARD_CONDITION: tensorboard_condition(world.deployments.get(naming.tensorboard(owner.name)))}

    def success_message(self, observed: Observed) -> str:
        report = workload.kind_report(TrainingReport, observed.report)
        if report is not None and report.outputs is not None and report.outputs.adapterUri:
            return f"adapter exported to {report.outputs.adapterUri}"
        return "training finished"


def dataset_references(spec) -> list[Reference]:  # noqa: ANN001 - a FineTuneJob's or an Evaluation's spec
    ref = spec.dataset.dataset_prep_ref
    return [Reference("DatasetPrep", ref.name)] if ref is not None else []


def dataset_prerequisite(spec, referenced: Referenced) -> Prerequisite:  # noqa: ANN001 - any kind's spec
    """DatasetReady for a FineTuneJob or an Evaluation: a JSONL path, or a Succeeded DatasetPrep on the same bucket."""
    dataset = spec.dataset
    ref = dataset.dataset_prep_ref
    if ref is None:
        direct = {
            "trainJsonl": getattr(dataset, "train_path", None),
            "testJsonl": getattr(dataset, "test_path", None),
            "validationJsonl": dataset.validation_path,
        }
        return Prerequisite(
            "DatasetReady",
            True,
            "PathGiven",
            "using the JSONL paths in spec.dataset",
            resolved={key: value for key, value in direct.items() if value},
        )
    prep = referenced.get(Reference("DatasetPrep", ref.name))
    if prep is None:
        return Prerequisite(
            "DatasetReady", False, "DatasetNotFound", f"DatasetPrep {ref.name} does not exist yet; waiting for it"
        )
    prep_status = prep.get("status") or {}
    bucket = prep["spec"]["bucket"]
    if bucket["name"] != spec.bucket.name or bucket.get("mountPath", "/mnt/gcs") != spec.bucket.mount_path:
        return Prerequisite(
            "DatasetReady",
            False,
            "DatasetBucketMismatch",
            f"DatasetPrep {ref.name} writes to bucket {bucket['name']} mounted at {bucket.get('mountPath', '/mnt/gcs')}"
            f"; mount the same bucket at the same path (spec.bucket) so its image paths resolve",
            stalled=True,
        )
    phase = prep_status.get("phase")
    if phase == workload.FAILED:
        return Prerequisite(
            "DatasetReady",
            False,
            "DatasetFailed",
            f"DatasetPrep {ref.name} failed: {prep_status.get('reason', '')}",
            stalled=True,
        )
    if phase != workload.SUCCEEDED:
        return Prerequisite(
            "DatasetReady",
            False,
            "WaitingForDataset",
            f"waiting for DatasetPrep {ref.name} to succeed (now {phase or 'Pending'})",
        )
    outputs = prep_status.get("outputs") or {}
    resolved = {key: outputs[key] for key in ("trainJsonl", "validationJsonl", "testJsonl") if outputs.get(key)}
    return Prerequisite(
        "DatasetReady", True, "DatasetSucceeded", f"using the splits of DatasetPrep {ref.name}", resolved=resolved
    )


def tensorboard_condition(deployment: dict[str, Any] | None) -> ConditionUpdate:
    """The TensorBoard Deployment's own Available condition, reason and message as the Deployment controller wrote
    them (e.g. MinimumReplicasUnavailable while its pod cannot start)."""
    if deployment is None:
        return ConditionUpdate(TENSORBOARD_CONDITION, False, "TensorBoardNotCreated",
                               "the TensorBoard Deployment does not exist yet")
    available = next((condition for condition in (deployment.get("status") or {}).get("conditions") or []
                      if condition.get("type") == "Available"), None)
    if available is None:
        return ConditionUpdate(TENSORBOARD_CONDITION, None, "TensorBoardStarting",
                               "the Deployment controller has not reported the Deployment's availability yet")
    status = {"True": True, "False": False}.get(available.get("status"))
    return ConditionUpdate(TENSORBOARD_CONDITION, status, available.get("reason") or "TensorBoardStarting",
                           available.get("message", ""))
