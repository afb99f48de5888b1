"""How Job and pod states become phases and reasons (status.workload.judge)."""

from __future__ import annotations

import datetime as dt

from mmft_operator.status.workload import judge

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def job(conditions=(), suspend=False, labels=None, status=None):  # noqa: ANN001, ANN201
    return {
        "metadata": {"name": "x-train", "creationTimestamp": "2026-11-29T11:00:00Z", "labels": labels or {}},
        "spec": {"suspend": suspend},
        "status": {"startTime": "2026-11-29T11:00:05Z", "conditions": list(conditions), **(status or {})},
    }


def cond(type_, reason="", message="", when="2026-11-29T11:30:00Z"):  # noqa: ANN001, ANN201
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": when}


def pod(phase, created="2026-11-29T11:00:06Z", terminated=None, waiting=None, conditions=()):  # noqa: ANN001, ANN201
    state = {}
    if terminated:
        state["terminated"] = terminated
    if waiting:
        state["waiting"] = waiting
    return {
        "metadata": {"name": f"p-{created}", "creationTimestamp": created},
        "status": {"phase": phase, "conditions": list(conditions),
                   "containerStatuses": [{"name": "trainer", "state": state}]},
    }


def test_no_job_yet_is_pending() -> None:
    verdict = judge(None, [], NOW, 600)
    assert (verdict.phase, verdict.reason) == ("Pending", "Creating")


def test_complete_job_succeeds_with_its_completion_time() -> None:
    verdict = judge(job([cond("Complete")], status={"completionTime": "2026-11-29T11:40:00Z"}), [], NOW, 600)
    assert (verdict.phase, verdict.completion_time, verdict.start_time) == (
        "Succeeded", "2026-11-29T11:40:00Z", "2026-11-29T11:00:05Z")


def test_config_error_exit_code_fails_as_config_invalid_with_the_trainers_message() -> None:
    failed = pod("Failed", terminated={"exitCode": 78, "message": "lora_target_modules matches no module"})
    verdict = judge(job([cond("Failed", "PodFailurePolicy")]), [failed], NOW, 600)
    assert (verdict.phase, verdict.reason, verdict.stalled) == ("Failed", "ConfigInvalid", True)
    assert "lora_target_modules" in verdict.message


def test_oom_killed_gets_its_own_reason_and_advice() -> None:
    failed = pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    verdict = judge(job([cond("Failed", "BackoffLimitExceeded")]), [failed], NOW, 600)
    assert verdict.reason == "OOMKilled" and "microBatchSize" in verdict.message


def test_deadline_exceeded() -> None:
    verdict = judge(job([cond("Failed", "DeadlineExceeded")]), [], NOW, 600)
    assert verdict.reason == "DeadlineExceeded"


def test_image_pull_error_stalls_without_waiting() -> None:
    waiting = pod("Pending", waiting={"reason": "ImagePullBackOff", "message": "not found"})
    verdict = judge(job(), [waiting], NOW, 600)
    assert (verdict.phase, verdict.reason, verdict.stalled) == ("Pending", "ImagePullError", True)


def test_unschedulable_is_surfaced_at_once_and_stalls_after_the_grace_period() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/12 nodes are available: 12 node(s) didn't match Pod's node affinity/selector",
                     "lastTransitionTime": "2026-11-29T11:55:00Z"}
    pending = pod("Pending", conditions=[unschedulable])
    fresh = judge(job(), [pending], NOW, 600)
    assert (fresh.reason, fresh.stalled) == ("Unschedulable", False)
    assert "node affinity" in fresh.message
    late = judge(job(), [pending], NOW + dt.timedelta(minutes=10), 600)
    assert (late.reason, late.stalled) == ("Unschedulable", True)


def test_preempted_pods_are_counted_apart_from_failures() -> None:
    preempted = pod("Failed", terminated={"exitCode": 143},
                    conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}])
    retry = pod("Running", created="2026-11-29T11:10:00Z")
    verdict = judge(job(), [preempted, retry], NOW, 600)
    assert (verdict.phase, verdict.preemptions, verdict.failures) == ("Running", 1, 0)
    between = judge(job(), [preempted], NOW, 600)
    assert between.reason == "Preempted"


def test_kueue_suspended_job_waits_for_admission() -> None:
    verdict = judge(job(suspend=True, labels={"kueue.x-k8s.io/queue-name": "q"}), [], NOW, 600)
    assert (verdict.phase, verdict.reason) == ("Suspended", "QueuedByKueue")


def test_gpu_out_of_memory_exit_code_fails_as_out_of_memory_naming_what_the_kind_lowers() -> None:
    from mmft_operator.contracts.exit_codes import OUT_OF_MEMORY
    from mmft_operator.reconcile.evaluation import EvaluationReconciler
    from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler

    failed = pod("Failed", terminated={"exitCode": OUT_OF_MEMORY, "message": "Traceback ... CUDA out of memory"})
    for reconciler, field in ((FineTuneJobReconciler, "spec.training.microBatchSize"),
                              (EvaluationReconciler, "spec.batchSize")):
        verdict = judge(job([cond("Failed", "PodFailurePolicy")]), [failed], NOW, 600,
                        reconciler.out_of_memory_advice)
        assert (verdict.phase, verdict.reason, verdict.stalled) == ("Failed", "OutOfMemory", True)
        assert field in verdict.message and f"exit code {OUT_OF_MEMORY}" in verdict.message


def test_unusable_data_exit_code_fails_as_data_invalid() -> None:
    failed = pod("Failed", terminated={"exitCode": 65, "message": "the test split has no rows"})
    verdict = judge(job([cond("Failed", "PodFailurePolicy")]), [failed], NOW, 600)
    assert (verdict.reason, verdict.message) == ("DataInvalid", "the test split has no rows")


def test_pod_startup_stages_come_from_the_newest_pods_own_timestamps() -> None:
    from mmft_operator.status.workload import pod_startup

    older = pod("Failed", created="2026-11-29T11:00:06Z")
    newest = pod("Running", created="2026-11-29T11:10:00Z",
                 conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-29T11:14:30Z"}])
    newest["status"]["containerStatuses"] = [
        {"name": "gcsfuse-sidecar", "state": {"running": {"startedAt": "2026-11-29T11:14:40Z"}}},
        {"name": "trainer", "state": {"running": {"startedAt": "2026-11-29T11:16:00Z"}}},
    ]
    assert pod_startup([older, newest], "trainer") == {"waitingForNodeSeconds": 270.0, "pullingImageSeconds": 90.0}
    pending = pod("Pending", created="2026-11-29T11:20:00Z")
    assert pod_startup([newest, pending], "trainer") == {}, "stages not reached are left out"



# -- Warning events the Job and pod objects do not show (issue 19.4) ---------------------------------------------

JOB_UID, POD_UID = "job-uid", "pod-uid"
REFUSAL = ('Error creating: pods "x-train-abcde" is forbidden: ValidatingAdmissionPolicy \'autopilot-limits\' '
           "denied request: the CPU request exceeds the maximum for this compute class")


def identified(obj, uid):  # noqa: ANN001, ANN201
    obj["metadata"]["uid"] = uid
    return obj


def event(kind, reason, message, first="2026-11-29T11:58:00Z", last=None, uid=None):  # noqa: ANN001, ANN201
    from mmft_operator.status.workload import WorkloadEvent

    return WorkloadEvent(kind=kind, name="x", uid=uid or (JOB_UID if kind == "Job" else POD_UID), reason=reason,
                         message=message, first_seen=first, last_seen=last or first)


def test_a_pod_refused_at_creation_is_pod_rejected_with_the_admission_message_then_stalled() -> None:
    refused = [event("Job", "FailedCreate", REFUSAL, first="2026-11-29T11:58:00Z", last="2026-11-29T11:59:30Z")]
    fresh = judge(identified(job(), JOB_UID), [], NOW, 900, events=refused, start_failure_grace_seconds=600)
    assert (fresh.phase, fresh.reason, fresh.message, fresh.stalled) == ("Pending", "PodRejected", REFUSAL, False)
    assert fresh.stalls_in == 480.0, "the grace counts from the first refusal: 2 of 10 minutes passed"
    late = judge(identified(job(), JOB_UID), [], NOW + dt.timedelta(minutes=8), 900, events=refused,
                 start_failure_grace_seconds=600)
    assert (late.reason, late.stalled, late.stalls_in) == ("PodRejected", True, None)


def test_a_refusal_of_an_earlier_job_or_before_the_newest_pod_no_longer_counts() -> None:
    earlier_job = [event("Job", "FailedCreate", REFUSAL, uid="an-earlier-job")]
    assert judge(identified(job(), JOB_UID), [], NOW, 900, events=earlier_job).reason == "Starting"
    refused = [event("Job", "FailedCreate", REFUSAL, first="2026-11-29T11:50:00Z")]
    created_since = identified(pod("Pending", created="2026-11-29T11:55:00Z"), POD_UID)
    assert judge(identified(job(), JOB_UID), [created_since], NOW, 900, events=refused).reason == "Starting"
    running = identified(pod("Running", created="2026-11-29T11:40:00Z"), POD_UID)
    assert judge(identified(job(), JOB_UID), [running], NOW, 900, events=refused).reason == "Running"


def test_a_failed_mount_or_attach_is_volume_mount_failed_with_the_events_message_then_stalled() -> None:
    creating = identified(pod("Pending", waiting={"reason": "ContainerCreating"}), POD_UID)
    for reason, message in (
        ("FailedMount", 'MountVolume.SetUp failed for volume "gcs" : bucket "b" does not exist'),
        ("FailedAttachVolume", 'Multi-Attach error for volume "pvc-1" Volume is already exclusively attached to '
                               "one node and can't be attached to another"),
    ):
        failures = [event("Pod", reason, message)]
        fresh = judge(identified(job(), JOB_UID), [creating], NOW, 900, events=failures,
                      start_failure_grace_seconds=600)
        assert (fresh.reason, fresh.stalled) == ("VolumeMountFailed", False)
        assert fresh.message == f"{reason}: {message}"
        late = judge(identified(job(), JOB_UID), [creating], NOW + dt.timedelta(minutes=10), 900,
                     events=failures, start_failure_grace_seconds=600)
        assert (late.reason, late.stalled) == ("VolumeMountFailed", True)
    other_pod = [event("Pod", "FailedMount", "m", uid="a-deleted-pod")]
    assert judge(identified(job(), JOB_UID), [creating], NOW, 900, events=other_pod).reason == "Starting"
    mounted = identified(pod("Running"), POD_UID)
    assert judge(identified(job(), JOB_UID), [mounted], NOW, 900,
                 events=[event("Pod", "FailedMount", "m")]).reason == "Running"


def test_unschedulable_says_when_its_grace_runs_out() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no node",
                     "lastTransitionTime": "2026-11-29T11:55:00Z"}
    verdict = judge(job(), [pod("Pending", conditions=[unschedulable])], NOW, 600)
    assert verdict.stalls_in == 300.0
    assert judge(job(), [pod("Pending", waiting={"reason": "ErrImagePull"})], NOW, 600).stalls_in is None


def evicted(message: str, created: str = "2026-11-29T11:00:06Z") -> dict:
    """A pod the kubelet evicted: status reason Evicted and its message (pkg/kubelet/eviction's formats), the
    container killed (137), and no DisruptionTarget for a limit eviction."""
    body = pod("Failed", created=created, terminated={"exitCode": 137, "reason": "Error"})
    body["status"].update({"reason": "Evicted", "message": message})
    return body


def test_an_eviction_over_an_ephemeral_storage_limit_names_the_kubelets_message_and_the_field_to_raise() -> None:
    for message in ('Usage of EmptyDir volume "scratch" exceeds the limit "10Gi". ',
                    'Container trainer exceeded its local ephemeral storage limit "10Gi". ',
                    "Pod ephemeral local storage usage exceeds the total limit of containers 10Gi. "):
        verdict = judge(job([cond("Failed", "BackoffLimitExceeded")]), [evicted(message)], NOW, 600)
        assert (verdict.phase, verdict.reason, verdict.stalled) == ("Failed", "Evicted", True)
        assert message.strip() in verdict.message
        assert "compute.ephemeralStorage" in verdict.message
        assert "exited with code 137" not in verdict.message
        assert verdict.failures == 1  # counted against backoffLimit: a retry fails the same way


def test_another_eviction_names_the_kubelets_message_without_storage_advice() -> None:
    message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi. "
    verdict = judge(job([cond("Failed", "BackoffLimitExceeded")]), [evicted(message)], NOW, 600)
    assert verdict.reason == "Evicted" and message.strip() in verdict.message
    assert "ephemeralStorage" not in verdict.message


def test_a_node_pressure_eviction_with_disruption_target_is_a_preemption_not_a_failure() -> None:
    pressured = evicted("The node was low on resource: ephemeral-storage. ")
    pressured["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                          "reason": "TerminationByKubelet"}]
    verdict = judge(job(), [pressured], NOW, 600)
    assert (verdict.reason, verdict.preemptions, verdict.failures) == ("Preempted", 1, 0)
