"""The planner with what the controller observes besides the Job (issue 19.4): the Warning events that say a pod
cannot start, the ServiceAccount's Workload Identity annotation, the TensorBoard Deployment's availability.
The integration test (tests/integration/test_status_story.py) drives the same paths through a cluster."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from mmft_operator.reconcile.datasetprep import DatasetPrepReconciler
from mmft_operator.reconcile.evaluation import EvaluationReconciler
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from mmft_operator.status.workload import WorkloadEvent
from planner_world import NOW, SETTINGS, converge, pod, run, sample, with_status

DSP, FTJ, EVAL = DatasetPrepReconciler(), FineTuneJobReconciler(), EvaluationReconciler()
REFUSAL = 'Error creating: pods "isic2020-dataprep-x1" is forbidden: the CPU request exceeds the maximum'
ANNOTATED = {"metadata": {"name": "mmft-workload",
                          "annotations": {"iam.gke.io/gcp-service-account": "w@p.iam.gserviceaccount.com"}}}
BARE = {"metadata": {"name": "mmft-workload"}}


def _created_dataprep():
    body, outcome = converge(DSP, sample("datasetprep.yaml"), service_account=ANNOTATED)
    job = {**outcome.applied.job, "metadata": {**outcome.applied.job["metadata"], "uid": "job-1"}}
    return body, job


def _refused(first: str, last: str) -> WorkloadEvent:
    return WorkloadEvent("Job", "isic2020-dataprep", "job-1", "FailedCreate", REFUSAL, first, last)


def test_a_refused_pod_shows_pod_rejected_and_asks_to_look_again_when_the_grace_runs_out() -> None:
    body, job = _created_dataprep()
    refused = (_refused("2026-12-01T11:58:00Z", "2026-12-01T11:59:00Z"),)
    outcome = run(DSP, body, observed_job=job, events=refused, service_account=ANNOTATED)
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", "PodRejected")
    assert outcome.condition("Reconciling")["message"] == REFUSAL
    assert outcome.condition("Stalled")["status"] == "False"
    assert outcome.status.requeue_at == NOW + dt.timedelta(seconds=SETTINGS.start_failure_grace_seconds - 120)
    assert outcome.status.event.reason == "PodRejected"

    later = outcome.status.requeue_at
    stalled = run(DSP, with_status(body, status), observed_job=job, events=refused, service_account=ANNOTATED,
                  now=later)
    assert stalled.condition("Stalled")["status"] == "True" and stalled.condition("Stalled")["message"] == REFUSAL
    assert stalled.status.requeue_at is None
    # Same reason, but the operator gave up waiting: a Warning says so to whoever watches events or alerts on them.
    assert stalled.status.patch is not None
    assert (stalled.status.event.type, stalled.status.event.reason) == ("Warning", "PodRejected")
    assert REFUSAL in stalled.status.event.message
    again = run(DSP, with_status(body, stalled.status.status), observed_job=job, events=refused,
                service_account=ANNOTATED, now=later + dt.timedelta(seconds=60))
    assert again.status.event is None, "still Stalled: no second Warning"


def test_a_failed_mount_shows_volume_mount_failed() -> None:
    body, job = _created_dataprep()
    creating = pod("Pending", waiting={"reason": "ContainerCreating"}, container="dataprep", job_uid="job-1")
    creating["metadata"]["uid"] = "pod-1"
    failure = WorkloadEvent("Pod", creating["metadata"]["name"], "pod-1", "FailedMount",
                            "MountVolume.SetUp failed for volume \"gcs\"", "2026-12-01T11:59:00Z",
                            "2026-12-01T11:59:00Z")
    outcome = run(DSP, body, observed_job=job, pods=[creating], events=(failure,), service_account=ANNOTATED)
    assert outcome.status.status["reason"] == "VolumeMountFailed"
    assert "MountVolume.SetUp failed" in outcome.condition("Reconciling")["message"]


@pytest.mark.parametrize(
    ("service_account", "status", "reason"),
    [(BARE, "False", "WorkloadIdentityMissing"), (None, "False", "ServiceAccountNotFound"),
     (ANNOTATED, "True", "GcpServiceAccountLinked")],
    ids=["no-annotation", "missing", "annotated"],
)
@pytest.mark.parametrize(("reconciler", "kind_file"),
                         [(DSP, "datasetprep.yaml"), (FTJ, "finetunejob.yaml"), (EVAL, "evaluation.yaml")],
                         ids=["DatasetPrep", "FineTuneJob", "Evaluation"])
def test_every_kind_says_whether_its_service_account_has_workload_identity_before_any_pod(
    reconciler, kind_file, service_account, status, reason
) -> None:
    outcome = run(reconciler, sample(kind_file), service_account=service_account)
    condition = outcome.condition("WorkloadIdentity")
    assert (condition["status"], condition["reason"]) == (status, reason)
    assert "mmft-workload" in condition["message"]
    # A warning only: it neither blocks the Job nor replaces the resource's reason or its Stalled condition.
    assert outcome.condition("Stalled")["status"] == "False"
    assert outcome.status.status["reason"] != reason


def test_the_workload_identity_warning_says_a_principal_grant_needs_no_annotation() -> None:
    message = run(DSP, sample("datasetprep.yaml"), service_account=BARE).condition("WorkloadIdentity")["message"]
    assert "iam.gke.io/gcp-service-account" in message and "Workload Identity Federation principal" in message


@pytest.mark.parametrize(
    "settings",
    [dataclasses.replace(SETTINGS, workload_identity_check=False),
     dataclasses.replace(SETTINGS, bucket_volume="hostPath:/var/mmft/buckets")],
    ids=["turned-off", "no-gcsfuse"],
)
def test_no_workload_identity_condition_where_the_check_does_not_apply_and_an_old_one_is_removed(settings) -> None:
    body, _ = converge(DSP, sample("datasetprep.yaml"), service_account=BARE)
    assert any(c["type"] == "WorkloadIdentity" for c in body["status"]["conditions"])
    outcome = run(DSP, body, settings=settings)
    assert "WorkloadIdentity" not in {c["type"] for c in outcome.status.status["conditions"]}


def _deployment(status: str, reason: str, message: str) -> dict:
    return {"metadata": {"name": "gemma3-melanoma-tensorboard"},
            "status": {"conditions": [{"type": "Available", "status": status, "reason": reason,
                                       "message": message}]}}


@pytest.mark.parametrize(
    ("deployment", "status", "reason"),
    [
        (None, "False", "TensorBoardNotCreated"),
        ({"metadata": {"name": "gemma3-melanoma-tensorboard"}, "status": {}}, "Unknown", "TensorBoardStarting"),
        (_deployment("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
         "False", "MinimumReplicasUnavailable"),
        (_deployment("True", "MinimumReplicasAvailable", "Deployment has minimum availability."), "True",
         "MinimumReplicasAvailable"),
    ],
    ids=["not-created", "no-condition-yet", "unavailable", "available"],
)
def test_tensorboard_availability_is_the_deployments_own(deployment, status, reason) -> None:
    from test_plan_finetunejob import READY

    deployments = {"gemma3-melanoma-tensorboard": deployment} if deployment else {}
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced=READY, deployments=deployments,
                  service_account=ANNOTATED)
    condition = outcome.condition("TensorBoardAvailable")
    assert (condition["status"], condition["reason"]) == (status, reason)
    if deployment and deployment["status"]:
        assert condition["message"] == deployment["status"]["conditions"][0]["message"]


def test_no_tensorboard_condition_when_tensorboard_is_disabled_and_an_old_one_is_removed() -> None:
    from test_plan_finetunejob import READY

    body, _ = converge(FTJ, sample("finetunejob.yaml"), referenced=READY, service_account=ANNOTATED)
    assert any(c["type"] == "TensorBoardAvailable" for c in body["status"]["conditions"])
    body["spec"]["tensorboard"] = {"enabled": False}
    outcome = run(FTJ, body, referenced=READY, service_account=ANNOTATED)
    assert "TensorBoardAvailable" not in {c["type"] for c in outcome.status.status["conditions"]}


def test_observed_conditions_keep_their_transition_time_and_a_converged_status_writes_nothing() -> None:
    body, first = converge(DSP, sample("datasetprep.yaml"), service_account=BARE)
    again = run(DSP, body, observed_job=first.applied.job, service_account=BARE, now=NOW + dt.timedelta(minutes=5))
    assert again.condition("WorkloadIdentity")["lastTransitionTime"] == first.condition("WorkloadIdentity")[
        "lastTransitionTime"]
    body, _ = converge(DSP, body, observed_job=first.applied.job, service_account=BARE)
    assert run(DSP, body, observed_job=first.applied.job, service_account=BARE).status.patch is None
