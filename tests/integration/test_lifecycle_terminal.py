"""Finished work never runs again, and a Failed run is retried in place, on the local control plane (kwok simulating
the workload pods; the real Job, TTL-after-finished and garbage collectors of kube-controller-manager).

The scenario of issue 17: with `ttlSecondsAfterFinished: 5` the Job controller deletes each finished Job; before the
fix the operator then created a new Job every ~10 s and status went back to Pending. Here every Job UID is counted
over a window several times that period, across an operator restart.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, wait_for

# kwok.mmft.io/* annotations choose the pods' outcomes: meaningful only where pods are simulated.
pytestmark = [pytest.mark.simulated_pods, pytest.mark.both_minors]

SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
WORKLOAD_SA = "mmft-workload"
TTL = 5
# Longer than the ~10 s re-create period measured before the fix, twice over (before and after a restart).
WATCH_SECONDS = 25
KINDS = {"DatasetPrep": ("dsp", "isic2020", "isic2020-dataprep"),
         "FineTuneJob": ("ftj", "gemma3-melanoma", "gemma3-melanoma-train"),
         "Evaluation": ("mmeval", "gemma3-melanoma", "gemma3-melanoma-evaluator")}


@pytest.fixture
def restartable_operator(cluster, crds, tmp_path):
    process = OperatorProcess(cluster, tmp_path / "operator.log", {"MMFT_UNSCHEDULABLE_GRACE_SECONDS": "0"}).start()
    yield process
    process.stop()


def _prepare_namespace(kubectl, namespace: str) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)
    kubectl("create", "secret", "generic", "huggingface-credentials", "-n", namespace,
            "--from-literal=token=hf_not_a_real_token")


def _get(kubectl, short: str, name: str, namespace: str) -> dict:
    result = kubectl("get", short, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _job_uids(kubectl, namespace: str) -> dict[str, str]:
    items = json.loads(kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    return {item["metadata"]["uid"]: item["metadata"]["name"] for item in items}


def _watch_jobs(kubectl, namespace: str, seconds: float, seen: dict[str, str]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.update(_job_uids(kubectl, namespace))
        time.sleep(0.5)


def _document(file: str, **spec) -> dict:
    document = yaml.safe_load((SAMPLES / file).read_text())
    document["spec"].update(spec)
    return document


def _apply(kubectl, namespace: str, document: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def _summary(kubectl, namespace: str, short: str, name: str) -> tuple:
    status = _get(kubectl, short, name, namespace).get("status", {})
    return status.get("phase"), status.get("reason"), status.get("completionTime"), status.get("attempt")


def test_finished_runs_whose_jobs_are_collected_stay_finished_and_never_run_again(
    kubectl, namespace, restartable_operator
) -> None:
    _prepare_namespace(kubectl, namespace)
    for file in ("datasetprep.yaml", "finetunejob.yaml", "evaluation.yaml"):
        _apply(kubectl, namespace, _document(file, ttlSecondsAfterFinished=TTL))
    failed = _document("finetunejob.yaml", ttlSecondsAfterFinished=TTL,
                       podMetadata={"annotations": {"kwok.mmft.io/exit-code": "87"}})
    failed["metadata"]["name"] = "oom"
    _apply(kubectl, namespace, failed)
    resources = [*KINDS.values(), ("ftj", "oom", "oom-train")]
    seen: dict[str, str] = {}  # every Job UID ever observed -> its name, from the first pass on

    def all_finished() -> bool:
        seen.update(_job_uids(kubectl, namespace))
        return all(_summary(kubectl, namespace, short, name)[0] in ("Succeeded", "Failed")
                   for short, name, _ in resources)

    wait_for(all_finished, timeout=240, interval=0.5, what="every run to finish")
    # Keyed by kind and name: the FineTuneJob and the Evaluation share theirs.
    finished = {(short, name): _summary(kubectl, namespace, short, name) for short, name, _ in resources}
    assert [finished[short, name][0] for short, name, _ in KINDS.values()] == ["Succeeded"] * 3, finished
    assert finished["ftj", "oom"][:2] == ("Failed", "OutOfMemory")
    # Jobs are created without a TTL: the operator sets the spec's once status has the outcome, so their collection
    # shows it did.
    wait_for(lambda: not _job_uids(kubectl, namespace), timeout=60, what="the TTL controller to collect every Job")
    first_uids = set(seen)
    assert sorted(seen.values()) == sorted(job for _, _, job in resources), "one Job per run"
    _watch_jobs(kubectl, namespace, WATCH_SECONDS, seen)
    restartable_operator.stop()
    restartable_operator.start()
    _watch_jobs(kubectl, namespace, WATCH_SECONDS, seen)

    assert set(seen) == first_uids, f"Jobs created after their run had finished: {set(seen) - first_uids}"
    for short, name, _ in resources:
        assert _summary(kubectl, namespace, short, name) == finished[short, name], (short, name)
        body = _get(kubectl, short, name, namespace)
        retained = _condition(body, "JobRetained")
        assert (retained["status"], retained["reason"]) == ("False", "JobDeleted"), (name, retained)
        assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    evaluation = _get(kubectl, "mmeval", "gemma3-melanoma", namespace)["status"]
    assert evaluation["resolved"]["model.tuned"].endswith("/adapter")


def test_a_failed_run_is_retried_in_place_with_kubectl_patch_and_with_apply(kubectl, namespace, restartable_operator):
    _prepare_namespace(kubectl, namespace)
    document = _document("finetunejob.yaml", podMetadata={"annotations": {"kwok.mmft.io/exit-code": "87"}})
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["metadata"]["name"] = "retry"
    _apply(kubectl, namespace, document)
    kubectl("wait", "ftj/retry", "-n", namespace, "--for=condition=Failed", "--timeout=180s")
    first_job = _get(kubectl, "job", "retry-train", namespace)
    assert first_job["spec"]["ttlSecondsAfterFinished"] == 7 * 24 * 3600, "a failed run's Job is kept 7 days"
    assert _get(kubectl, "ftj", "retry", namespace)["status"]["attempt"] == 0

    # kubectl: raise the counter. The failed Job (kept, its TTL is 7 days) is deleted, a new one of the same name runs.
    kubectl("patch", "ftj", "retry", "-n", namespace, "--type=merge", "-p", '{"spec":{"retry":1}}')
    second_job = wait_for(
        lambda: (job := _get(kubectl, "job", "retry-train", namespace))
        and job["metadata"]["uid"] != first_job["metadata"]["uid"] and job,
        timeout=60, what="the retried Job",
    )
    assert second_job["metadata"]["annotations"]["mmft.io/attempt"] == "1"
    wait_for(lambda: _summary(kubectl, namespace, "ftj", "retry")[::3] == ("Failed", 1), timeout=120,
             what="attempt 1 to fail as well (same exit code)")
    ftj = _get(kubectl, "ftj", "retry", namespace)
    assert ftj["status"]["failures"] == 1, "only the current Job's pods count"
    events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                                "involvedObject.kind=FineTuneJob,involvedObject.name=retry", "-o", "json").stdout)
    assert "Retrying" in {event["reason"] for event in events["items"]}
    # The API server guards the counter: it never goes down.
    lowered = kubectl("patch", "ftj", "retry", "-n", namespace, "--type=merge", "-p", '{"spec":{"retry":0}}',
                      check=False)
    assert lowered.returncode != 0 and "spec.retry may only increase" in lowered.stderr

    # From git: the manifest with the counter raised and the cause removed, applied as Argo CD applies it.
    document["spec"]["retry"] = 2
    document["spec"]["podMetadata"] = {"annotations": {}}
    _apply(kubectl, namespace, document)
    kubectl("wait", "ftj/retry", "-n", namespace, "--for=condition=Succeeded", "--timeout=180s")
    status = _get(kubectl, "ftj", "retry", namespace)["status"]
    assert (status["phase"], status["attempt"]) == ("Succeeded", 2)
    assert _get(kubectl, "job", "retry-train", namespace)["metadata"]["annotations"]["mmft.io/attempt"] == "2"
    assert _get(kubectl, "job", "retry-train", namespace)["spec"]["ttlSecondsAfterFinished"] == 24 * 3600

    # A run that succeeded is final: raising the counter again is refused with the reason.
    refused = kubectl("patch", "ftj", "retry", "-n", namespace, "--type=merge", "-p", '{"spec":{"retry":3}}',
                      check=False)
    assert refused.returncode != 0 and "can be raised only while status.phase is Failed" in refused.stderr


def test_a_job_deleted_by_hand_is_recreated_while_running_and_leaves_a_finished_run_final(
    kubectl, namespace, restartable_operator
):
    """Deleting the Job is what a user tries first to "kill" or "clean up" a run. While the run is running the Job
    is desired state and comes back (the trainer resumes from its checkpoints); once the outcome is recorded the
    deletion only frees the Job, as a collected TTL does."""
    _prepare_namespace(kubectl, namespace)
    document = _document("finetunejob.yaml", podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "12"}})
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    document["metadata"]["name"] = "by-hand"
    _apply(kubectl, namespace, document)
    wait_for(lambda: _summary(kubectl, namespace, "ftj", "by-hand")[0] == "Running", timeout=120, what="the run")
    running_job = _get(kubectl, "job", "by-hand-train", namespace)["metadata"]["uid"]

    kubectl("delete", "job", "by-hand-train", "-n", namespace, "--wait=false")
    recreated = wait_for(
        lambda: (job := _get(kubectl, "job", "by-hand-train", namespace)) and job["metadata"]["uid"] != running_job
        and job,
        timeout=60, what="the running run's Job to be created again",
    )
    # Stamped only from the first retry on: the recreated Job is still attempt 0, a deleted Job is not a retry.
    assert "mmft.io/attempt" not in (recreated["metadata"].get("annotations") or {})
    assert _summary(kubectl, namespace, "ftj", "by-hand")[3] == 0
    kubectl("wait", "ftj/by-hand", "-n", namespace, "--for=condition=Succeeded", "--timeout=180s")
    finished = _summary(kubectl, namespace, "ftj", "by-hand")
    assert finished[0] == "Succeeded"
    assert _condition(_get(kubectl, "ftj", "by-hand", namespace), "JobRetained")["reason"] == "Retained"

    kubectl("delete", "job", "by-hand-train", "-n", namespace, "--wait=true", "--timeout=60s")
    seen: dict[str, str] = {}
    _watch_jobs(kubectl, namespace, 15, seen)
    assert not seen, f"a Job was created for a finished run: {seen}"
    body = _get(kubectl, "ftj", "by-hand", namespace)
    assert _summary(kubectl, namespace, "ftj", "by-hand") == finished
    retained = _condition(body, "JobRetained")
    assert (retained["status"], retained["reason"]) == ("False", "JobDeleted")
    assert "deleted by someone" in retained["message"]
