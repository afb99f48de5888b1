"""The planner for a FineTuneJob, observed world -> plan, on the paths the integration tests drive through a cluster
(tests/integration/test_operator.py, test_invariants.py, test_crash_points.py, test_stale_reads.py, test_kueue.py)."""

from __future__ import annotations

import pytest
from mmft_operator.contracts.progress import TrainingProgress, WorkloadReport
from mmft_operator.reconcile import waiting_job
from mmft_operator.reconcile.engine import Reference
from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
from planner_world import (
    NOW,
    UID,
    converge,
    job,
    job_condition,
    pod,
    run,
    sample,
    succeeded,
    with_status,
)

FTJ = FineTuneJobReconciler()
JOB_NAME = "gemma3-melanoma-train"
DATASET = Reference("DatasetPrep", "isic2020")
PREP_OUTPUTS = {"trainJsonl": "/mnt/gcs/prepared/isic2020/train.jsonl",
                "validationJsonl": "/mnt/gcs/prepared/isic2020/validation.jsonl",
                "testJsonl": "/mnt/gcs/prepared/isic2020/test.jsonl"}
PREP = sample("datasetprep.yaml")
READY = {DATASET: succeeded(PREP, PREP_OUTPUTS)}
EXPECTED_CHILDREN = {"ConfigMap/gemma3-melanoma-axolotl", "ConfigMap/gemma3-melanoma-finetunejob-report",
                     "Role/gemma3-melanoma-finetunejob-report-writer",
                     "RoleBinding/gemma3-melanoma-finetunejob-report-writer",
                     "PersistentVolumeClaim/gemma3-melanoma-output", "Deployment/gemma3-melanoma-tensorboard",
                     "Service/gemma3-melanoma-tensorboard", f"Job/{JOB_NAME}"}


def started() -> tuple[dict, dict]:
    """A FineTuneJob whose children exist, converged: the first pass created them; the second, seeing the Job,
    rewrites status once (the conditions' order: DatasetReady is no longer evaluated once inputs are recorded)."""
    body, outcome = converge(FTJ, sample("finetunejob.yaml"), referenced=READY)
    body, _ = converge(FTJ, body, observed_job=outcome.applied.job)
    return body, outcome.applied.job


@pytest.mark.parametrize(
    ("prep", "reason", "stalled"),
    [
        (None, "DatasetNotFound", False),
        (succeeded(PREP, {}, phase="Running"), "WaitingForDataset", False),
        (succeeded(PREP, {}, phase="Failed", reason="DataInvalid"), "DatasetFailed", True),
        (succeeded(sample("datasetprep.yaml", bucket={"name": "other-bucket"}), PREP_OUTPUTS), "DatasetBucketMismatch",
         True),
        (succeeded(sample("datasetprep.yaml", bucket={"name": "my-mmft-bucket", "mountPath": "/data"}), PREP_OUTPUTS),
         "DatasetBucketMismatch", True),
    ],
    ids=["not-found", "running", "failed", "other-bucket", "other-mount-path"],
)
def test_a_dataset_that_is_not_ready_creates_nothing_and_says_why(prep, reason, stalled) -> None:
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced={DATASET: prep})
    assert outcome.references == [DATASET]
    assert outcome.children.ensure == [] and outcome.applied.job is None
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", reason)
    assert outcome.condition("DatasetReady")["status"] == "False"
    assert outcome.condition("Stalled")["status"] == str(stalled)
    assert outcome.condition("Reconciling")["status"] == str(not stalled)
    assert "childrenHash" not in status and "children" not in status
    assert outcome.status.event.type == ("Warning" if stalled else "Normal")


def test_a_succeeded_dataset_creates_every_child_create_first_with_its_splits() -> None:
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced=READY)
    assert set(outcome.created) == EXPECTED_CHILDREN
    assert outcome.children.expect_missing  # a new resource: create first, read only on a conflict
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", "Starting")
    assert status["resolved"]["trainJsonl"] == PREP_OUTPUTS["trainJsonl"]
    assert set(status["children"]) == EXPECTED_CHILDREN
    assert status["childrenHash"] == outcome.children.hash_when_ensured
    assert outcome.condition("DatasetReady")["reason"] == "DatasetSucceeded"
    config = next(c for c in outcome.children.ensure if c["metadata"]["name"] == "gemma3-melanoma-axolotl")
    assert PREP_OUTPUTS["trainJsonl"] in next(iter(config["data"].values()))
    assert (outcome.status.event.type, outcome.status.event.reason) == ("Normal", "Starting")


def test_after_a_failed_attempt_children_are_read_before_created() -> None:
    assert not run(FTJ, sample("finetunejob.yaml"), referenced=READY, retrying=True).children.expect_missing


def test_a_converged_resource_reads_no_reference_ensures_no_child_and_writes_nothing() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job)
    assert outcome.references == []  # inputs are fixed once the Job exists and status.resolved records them
    assert outcome.children.ensure == []
    assert outcome.suspend is None
    assert outcome.status.patch is None and outcome.status.event is None


def test_the_resync_verifies_every_child_yet_writes_no_unchanged_status() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job, verify_children=True)
    assert set(outcome.created) == EXPECTED_CHILDREN and not outcome.children.expect_missing
    assert outcome.status.patch is None


def test_recorded_inputs_stay_fixed_while_the_job_exists_even_if_the_dataset_fails_later() -> None:
    body, applied_job = started()
    outcome = run(FTJ, body, observed_job=applied_job,
                  referenced={DATASET: succeeded(PREP, {}, phase="Failed", reason="DataInvalid")})
    assert outcome.references == []
    assert outcome.status.status["resolved"] == body["status"]["resolved"]
    assert outcome.status.status["reason"] != "DatasetFailed"


def test_a_job_lost_before_its_inputs_were_recorded_resolves_them_again() -> None:
    body, applied_job = started()
    unrecorded = with_status(body, {k: v for k, v in body["status"].items() if k != "resolved"})
    assert run(FTJ, unrecorded, observed_job=applied_job, referenced=READY).references == [DATASET]


def test_a_stale_job_of_an_earlier_object_with_this_name_is_never_adopted() -> None:
    stale = job(JOB_NAME, owner_uid="uid-earlier", conditions=[job_condition("Complete")])
    outcome = run(FTJ, sample("finetunejob.yaml"), observed_job=stale, referenced=READY)
    assert outcome.children.job is None
    assert f"Job/{JOB_NAME}" in outcome.created  # its own, which the API refuses until the old one is gone
    assert outcome.status.status["phase"] != "Succeeded"


def test_a_child_conflict_stalls_and_records_no_children_hash() -> None:
    message = "ConfigMap gemma3-melanoma-axolotl exists and is not controlled by this resource"
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced=READY, conflict=message)
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == ("Pending", "ChildConflict")
    assert outcome.condition("Stalled")["message"] == message
    assert "childrenHash" not in status
    assert outcome.status.event.type == "Warning"


def test_an_invalid_spec_stalls_as_spec_invalid_reads_nothing_and_keeps_the_rest_of_status() -> None:
    body, _ = started()
    invalid = with_status({**body, "spec": {**body["spec"], "training": {**body["spec"]["training"], "lora": "x"}}},
                          body["status"])
    invalid["metadata"]["generation"] = 2
    outcome = run(FTJ, invalid)
    assert outcome.references == [] and outcome.children.ensure == []
    status = outcome.status.status
    assert (status["phase"], status["reason"], status["observedGeneration"]) == ("Pending", "SpecInvalid", 2)
    assert outcome.condition("ConfigValid")["message"].startswith("spec.training.lora")
    assert status["childrenHash"] == body["status"]["childrenHash"]


def _running_world(**job_changes):  # noqa: ANN202
    body, applied_job = started()
    return body, {**applied_job, **job_changes}


@pytest.mark.parametrize(
    ("job_conditions", "pods", "phase", "reason", "config_valid"),
    [
        ([], [pod("Running")], "Running", "Running", "Unknown"),
        ([job_condition("Complete")], [pod("Succeeded")], "Succeeded", "Succeeded", "True"),
        ([job_condition("Failed", "PodFailurePolicy")],
         [pod("Failed", terminated={"exitCode": 78, "message": "lora_target_modules matches no module"})],
         "Failed", "ConfigInvalid", "False"),
        ([job_condition("Failed", "PodFailurePolicy")], [pod("Failed", terminated={"exitCode": 87})],
         "Failed", "OutOfMemory", "Unknown"),
        ([job_condition("Failed", "BackoffLimitExceeded")],
         [pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})], "Failed", "OOMKilled", "Unknown"),
        ([job_condition("Failed", "DeadlineExceeded")], [], "Failed", "DeadlineExceeded", "Unknown"),
        ([], [pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True"}])], "Pending", "Preempted",
         "Unknown"),
        ([], [pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/3 nodes are available",
                                          "lastTransitionTime": "2026-12-01T11:55:00Z"}])],
         "Pending", "Unschedulable", "Unknown"),
        ([], [pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})], "Pending",
         "ImagePullError", "Unknown"),
    ],
    ids=["running", "succeeded", "config-invalid", "gpu-oom", "oom-killed", "deadline", "preempted", "unschedulable",
         "image-pull"],
)
def test_the_job_and_its_pods_decide_phase_reason_and_config_valid(job_conditions, pods, phase, reason,
                                                                     config_valid) -> None:
    body, running_job = _running_world()
    running_job["status"] = {**running_job["status"], "conditions": job_conditions,
                             "startTime": "2026-12-01T11:00:05Z"}
    outcome = run(FTJ, body, observed_job=running_job, pods=pods)
    status = outcome.status.status
    assert (status["phase"], status["reason"]) == (phase, reason)
    assert outcome.condition("ConfigValid")["status"] == config_valid
    assert outcome.condition("Running")["status"] == str(phase == "Running")
    assert outcome.condition("Failed")["status"] == str(phase == "Failed")
    assert outcome.status.event is not None and outcome.status.event.reason == reason
    assert status["startTime"] == "2026-12-01T11:00:05Z"
    assert ("completionTime" in status) == (phase in ("Succeeded", "Failed"))
    assert status["preemptions"] == (1 if reason == "Preempted" else 0)


def test_success_names_the_exported_adapter_and_terminal_times_never_move() -> None:
    body, done_job = _running_world()
    done_job["status"] = {"startTime": "2026-12-01T11:00:05Z", "completionTime": "2026-12-01T11:40:00Z",
                          "conditions": [job_condition("Complete")]}
    report = WorkloadReport(phase="Completed", outputs={"adapterUri": "gs://b/tuned/adapter"})
    first = run(FTJ, body, observed_job=done_job, report=report)
    assert first.condition("Succeeded")["message"] == "adapter exported to gs://b/tuned/adapter"
    assert first.status.status["completionTime"] == "2026-12-01T11:40:00Z"
    finished = with_status(body, first.status.status)
    moved = {**done_job, "status": {**done_job["status"], "completionTime": "2026-12-01T12:00:00Z",
                                    "startTime": "2026-12-01T11:10:00Z"}}
    again = run(FTJ, finished, observed_job=moved, report=report, now=NOW.replace(hour=13))
    assert again.status.status["completionTime"] == "2026-12-01T11:40:00Z"
    assert again.status.status["startTime"] == "2026-12-01T11:00:05Z"
    assert again.status.patch is None and again.status.event is None


def test_progress_from_the_trainers_report_reaches_status() -> None:
    body, running_job = _running_world()
    report = WorkloadReport(phase="Running", progress=TrainingProgress(step=120, totalSteps=1000, loss=0.4321))
    outcome = run(FTJ, body, observed_job=running_job, pods=[pod("Running")], report=report)
    progress = outcome.status.status["progress"]
    assert (progress["step"], progress["summary"], progress["loss"]) == (120, "120/1000 (12%)", 0.4321)
    assert outcome.condition("ConfigValid")["reason"] == "PreflightPassed"
    # The same world again: nothing new, nothing written (a report only moves status when it changes).
    assert run(FTJ, with_status(body, outcome.status.status), observed_job=running_job, pods=[pod("Running")],
               report=report).status.patch is None


@pytest.mark.parametrize(("wanted", "observed", "change"), [(True, False, True), (False, True, False),
                                                            (True, True, None), (False, False, None)])
def test_spec_suspend_is_kept_in_sync_on_the_job(wanted, observed, change) -> None:
    body, observed_job = _running_world()
    body["spec"]["suspend"] = wanted
    observed_job["spec"] = {"suspend": observed}
    # spec.suspend is part of the Job's spec hash: the children are ensured, the existing Job kept (create-only),
    # and its suspend flipped on its own.
    outcome = run(FTJ, body, observed_job=observed_job)
    assert outcome.suspend is change


def test_a_kueue_owned_job_is_never_suspended_or_resumed_by_the_operator() -> None:
    body = sample("finetunejob.yaml", queueName="team-a")
    created = run(FTJ, body, referenced=READY)
    job_child = next(c for c in created.children.ensure if c["kind"] == "Job")
    assert job_child["spec"]["suspend"] is True  # created suspended; Kueue admits it
    assert created.children.wanted_suspend is None
    queued = job(JOB_NAME, suspend=True, labels={"kueue.x-k8s.io/queue-name": "team-a"})
    outcome = run(FTJ, with_status(body, created.status.status), observed_job=queued)
    assert outcome.suspend is None
    assert (outcome.status.status["phase"], outcome.status.status["reason"]) == ("Suspended", "QueuedByKueue")
    evicted = {**queued, "spec": {"suspend": True}}
    assert run(FTJ, with_status(body, created.status.status), observed_job=evicted).suspend is None


def test_a_spec_change_ensures_the_children_again_and_records_the_new_generation() -> None:
    body, applied_job = started()
    changed = with_status(sample("finetunejob.yaml", podMetadata={"annotations": {"team": "b"}}), body["status"])
    changed["metadata"]["generation"] = 2
    outcome = run(FTJ, changed, observed_job=applied_job)
    assert outcome.children.ensure and not outcome.children.expect_missing
    assert outcome.status.status["observedGeneration"] == 2
    assert outcome.status.status["childrenHash"] != body["status"]["childrenHash"]
    assert outcome.status.patch is not None


def test_the_owner_of_every_child_is_this_resource() -> None:
    outcome = run(FTJ, sample("finetunejob.yaml"), referenced=READY)
    for child in outcome.children.ensure:
        assert [ref["uid"] for ref in child["metadata"]["ownerReferences"]] == [UID]


# -- when the spec locks: a waiting Job is replaced, a Job whose pod ran never is (reconcile/waiting_job.py) --------

UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/9 nodes are available: 9 Insufficient nvidia.com/gpu",
                 "lastTransitionTime": "2026-12-01T11:55:00Z"}
OTHER_CARD = {"accelerator": "nvidia-l4", "gpusPerNode": 1, "cpu": "8", "memory": "32Gi", "ephemeralStorage": "10Gi"}


def _observed(applied_job: dict, uid: str = "job-uid-1", **status) -> dict:  # noqa: ANN003
    """The Job the planner created, as the API returns it: with a UID and the Job controller's status."""
    observed = {**applied_job, "status": {"startTime": "2026-12-01T11:00:05Z", **status}}
    observed["metadata"] = {**applied_job["metadata"], "uid": uid}
    return observed


def _pod_of(job_uid: str, phase: str, **kwargs) -> dict:  # noqa: ANN003
    made = pod(phase, job_uid=job_uid, **kwargs)
    made["metadata"]["ownerReferences"] = [{"kind": "Job", "uid": job_uid, "controller": True}]
    return made


def _moved(body: dict, **compute) -> dict:  # noqa: ANN003
    moved = with_status(body, body["status"])
    moved["spec"]["compute"] = {**moved["spec"]["compute"], **compute}
    moved["metadata"]["generation"] = 2
    return moved


def _node_selector(job_body: dict) -> dict:
    return job_body["spec"]["template"]["spec"]["nodeSelector"]


@pytest.mark.parametrize(
    "pods",
    [[], [pod("Pending", conditions=[UNSCHEDULABLE])], [pod("Pending", waiting={"reason": "ContainerCreating"})]],
    ids=["no-pod-quota-refused", "unschedulable", "not-started-yet"],
)
def test_a_compute_change_while_the_job_waits_replaces_it_and_the_next_pass_creates_the_new_one(pods) -> None:
    body, created = started()
    waiting = _observed(created)
    outcome = run(FTJ, _moved(body, **OTHER_CARD), observed_job=waiting, pods=pods)
    replacement = outcome.children.replace_job
    assert replacement is not None and replacement.job is waiting
    assert "accelerator nvidia-tesla-a100 -> nvidia-l4" in waiting_job.describe_change(waiting, replacement.desired)
    assert f"Job/{JOB_NAME}" not in outcome.created, "the new Job waits until the old one is gone (same name)"
    assert "ConfigMap/gemma3-melanoma-axolotl" in outcome.created, "the siblings follow at once"
    assert "runStartedTime" not in outcome.status.status
    # The pass that finds the old Job gone creates the new one, on the new accelerator.
    gone = run(FTJ, with_status(_moved(body, **OTHER_CARD), outcome.status.status), referenced=READY)
    new_job = next(child for child in gone.children.ensure if child["kind"] == "Job")
    assert _node_selector(new_job)["cloud.google.com/gke-accelerator"] == "nvidia-l4"
    assert gone.children.replace_job is None


def test_a_queued_job_kueue_holds_suspended_is_waiting_and_is_replaced_still_queued() -> None:
    body, outcome = converge(FTJ, sample("finetunejob.yaml", queueName="team-a"), referenced=READY)
    created = next(child for child in outcome.children.ensure if child["kind"] == "Job")
    queued = _observed(created)
    body, _ = converge(FTJ, body, observed_job=queued)
    assert body["status"]["reason"] == "QueuedByKueue"
    moved = run(FTJ, _moved(body, **OTHER_CARD), observed_job=queued)
    assert moved.children.replace_job is not None
    recreated = run(FTJ, with_status(_moved(body, **OTHER_CARD), moved.status.status), referenced=READY)
    new_job = next(child for child in recreated.children.ensure if child["kind"] == "Job")
    assert new_job["spec"]["suspend"] is True
    assert new_job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


@pytest.mark.parametrize(
    ("job_status", "pods", "recorded"),
    [
        ({}, [_pod_of("job-uid-1", "Running")], None),
        ({}, [_pod_of("job-uid-1", "Failed", terminated={"exitCode": 1, "startedAt": "2026-12-01T11:10:00Z"})],
         None),
        ({"succeeded": 1}, [], None),
        ({}, [], "2026-12-01T11:10:00Z"),
        ({"conditions": [job_condition("Failed", "DeadlineExceeded")]}, [], None),
    ],
    ids=["a-pod-runs", "a-pod-ran-and-failed", "pods-gone-job-counted-one", "run-start-recorded", "job-finished"],
)
def test_a_job_whose_pod_ran_or_that_finished_is_never_replaced(job_status, pods, recorded) -> None:
    body, created = started()
    if recorded:
        body["status"]["runStartedTime"] = recorded
    outcome = run(FTJ, _moved(body, **OTHER_CARD), observed_job=_observed(created, **job_status), pods=pods)
    assert outcome.children.replace_job is None
    assert outcome.applied.job["metadata"]["uid"] == "job-uid-1", "the Job stays (create-only)"


def test_a_job_that_differs_only_in_suspend_is_flipped_not_replaced() -> None:
    body, created = started()
    body["spec"]["suspend"] = True
    outcome = run(FTJ, body, observed_job=_observed(created))
    assert outcome.children.replace_job is None and outcome.suspend is True


def test_a_job_without_the_operators_stamp_is_never_replaced() -> None:
    body, created = started()
    unstamped = _observed(created)
    unstamped["metadata"] = {key: value for key, value in unstamped["metadata"].items() if key != "annotations"}
    assert run(FTJ, _moved(body, **OTHER_CARD), observed_job=unstamped).children.replace_job is None


def test_run_started_time_is_the_first_pod_start_of_this_job_and_is_kept_once_set() -> None:
    body, created = started()
    job_now = _observed(created, uid="job-uid-2")
    # A pod of a deleted Job of the same name, still terminating, is not this Job's: it neither runs this Job nor
    # starts the lock.
    leftover = _pod_of("job-uid-1", "Running")
    waiting = run(FTJ, body, observed_job=job_now, pods=[leftover, _pod_of("job-uid-2", "Pending")])
    assert waiting.status.status["phase"] == "Pending" and "runStartedTime" not in waiting.status.status
    running_pod = _pod_of("job-uid-2", "Running")
    running_pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-12-01T11:20:00Z"}}
    ran = run(FTJ, body, observed_job=job_now, pods=[running_pod])
    assert ran.status.status["runStartedTime"] == "2026-12-01T11:20:00Z"
    later = run(FTJ, with_status(body, ran.status.status), observed_job=job_now, pods=[])
    assert later.status.status["runStartedTime"] == "2026-12-01T11:20:00Z"
    gone = run(FTJ, with_status(body, ran.status.status), referenced=READY)
    assert gone.status.status["runStartedTime"] == "2026-12-01T11:20:00Z", "never cleared, not even with no Job"
