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

