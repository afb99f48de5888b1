"""The operator on the local control plane, kwok simulating the workload pods (docs/localcluster.md).

The kwok.mmft.io/* pod annotations, passed through spec.podMetadata, make a simulated pod exit with a code,
get OOMKilled or be preempted: the operator sees exactly what a kubelet would report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cluster_helpers import ROOT, OperatorProcess, create_workload_service_account, token_kubeconfig, wait_for
from kubernetes import client, config
from mmft_operator.contracts.progress import (
    EvaluationOutputs,
    EvaluationReport,
    ScoringProgress,
    TrainingProgress,
    TrainingReport,
)
from mmft_operator.contracts.report_writer import ReportWriter

# kwok.mmft.io/* annotations choose the pods' outcomes: meaningful only where pods are simulated.
pytestmark = [pytest.mark.simulated_pods, pytest.mark.both_minors]

SAMPLES = ROOT / "deploy/samples/gemma3-melanoma"
WORKLOAD_SA = "mmft-workload"


def _prepare_namespace(kubectl, namespace: str) -> None:
    create_workload_service_account(kubectl, namespace, WORKLOAD_SA)
    kubectl(
        "create",
        "secret",
        "generic",
        "huggingface-credentials",
        "-n",
        namespace,
        "--from-literal=token=hf_not_a_real_token",
    )


def _get(kubectl, kind: str, name: str, namespace: str) -> dict:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def _condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def _apply(kubectl, namespace: str, document: dict) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def _finetunejob(name: str, **spec_changes) -> dict:
    document = yaml.safe_load((SAMPLES / "finetunejob.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["dataset"] = {"trainPath": "/mnt/gcs/data/train.jsonl"}
    for key, value in spec_changes.items():
        document["spec"][key] = value
    return document


def test_samples_chain_to_succeeded_with_every_child_as_specified(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    kubectl("apply", "-n", namespace, "-k", str(SAMPLES))
    for kind, name in (("dsp", "isic2020"), ("ftj", "gemma3-melanoma"), ("mmeval", "gemma3-melanoma")):
        kubectl("wait", f"{kind}/{name}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")

    ftj = _get(kubectl, "ftj", "gemma3-melanoma", namespace)
    status = ftj["status"]
    assert status["phase"] == "Succeeded" and status["observedGeneration"] == ftj["metadata"]["generation"]
    assert status["startTime"] <= status["completionTime"]
    assert status["resolved"]["trainJsonl"] == "/mnt/gcs/prepared/isic2020/train.jsonl"
    assert _condition(ftj, "DatasetReady")["reason"] == "DatasetSucceeded"
    assert _condition(ftj, "Stalled")["status"] == "False"
    assert _condition(ftj, "Reconciling")["status"] == "False"
    # From the pod's own timestamps (scheduler's PodScheduled, the container's startedAt).
    assert set(status["startup"]) >= {"waitingForNodeSeconds", "pullingImageSeconds"}, status.get("startup")
    assert all(seconds >= 0 for seconds in status["startup"].values())

    job = _get(kubectl, "job", "gemma3-melanoma-train", namespace)
    assert job["metadata"]["ownerReferences"][0]["kind"] == "FineTuneJob"
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"
    assert job["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    env = {e["name"]: e for e in pod_spec["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "huggingface-credentials", "key": "token"}
    pods = json.loads(
        kubectl(
            "get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=gemma3-melanoma-train", "-o", "json"
        ).stdout
    )["items"]
    node = _get(kubectl, "node", pods[0]["spec"]["nodeName"], "")
    assert node["metadata"]["labels"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-a100"

    config = _get(kubectl, "configmap", "gemma3-melanoma-axolotl", namespace)
    axolotl = yaml.safe_load(config["data"]["axolotl.yaml"])
    assert axolotl["base_model"] == "google/gemma-3-4b-it"
    assert "hf_not_a_real_token" not in config["data"]["axolotl.yaml"]
    assert (
        _get(kubectl, "pvc", "gemma3-melanoma-output", namespace)["spec"]["resources"]["requests"]["storage"] == "100Gi"
    )
    service = _get(kubectl, "service", "gemma3-melanoma-tensorboard", namespace)
    assert service["spec"]["type"] == "ClusterIP"
    tensorboard = _get(kubectl, "deployment", "gemma3-melanoma-tensorboard", namespace)
    claims = [v for v in tensorboard["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [], "TensorBoard must not mount the trainer's ReadWriteOnce volume"

    evaluation = _get(kubectl, "mmeval", "gemma3-melanoma", namespace)
    command = _get(kubectl, "job", "gemma3-melanoma-evaluator", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert "tuned=google/gemma-3-4b-it+gs://my-mmft-bucket/tuned-models/gemma3-melanoma/adapter" in command["command"]
    assert evaluation["status"]["phase"] == "Succeeded"

    events = kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.kind=FineTuneJob,involvedObject.name=gemma3-melanoma",
        "-o",
        "json",
    ).stdout
    reasons = {event["reason"] for event in json.loads(events)["items"]}
    assert {"Running", "Succeeded"} <= reasons or {"Starting", "Succeeded"} <= reasons, reasons
    described = kubectl("describe", "ftj", "gemma3-melanoma", "-n", namespace).stdout
    assert "Succeeded" in described and "Events:" in described


def test_finetunejob_waits_for_its_dataset_then_starts(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "finetunejob.yaml"))
    waiting = wait_for(
        lambda: _condition(_get(kubectl, "ftj", "gemma3-melanoma", namespace), "DatasetReady"), what="DatasetReady"
    )
    assert (waiting["status"], waiting["reason"]) == ("False", "DatasetNotFound")
    assert kubectl("get", "job", "-n", namespace, "-o", "name").stdout.strip() == ""
    kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "datasetprep.yaml"))
    kubectl("wait", "ftj/gemma3-melanoma", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")


def test_config_error_exit_code_fails_at_once_as_config_invalid(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(
        kubectl, namespace, _finetunejob("bad-config", podMetadata={"annotations": {"kwok.mmft.io/exit-code": "78"}})
    )
    kubectl("wait", "ftj/bad-config", "-n", namespace, "--for=condition=Failed", "--timeout=120s")
    ftj = _get(kubectl, "ftj", "bad-config", namespace)
    assert (ftj["status"]["phase"], ftj["status"]["reason"]) == ("Failed", "ConfigInvalid")
    assert _condition(ftj, "ConfigValid")["status"] == "False"
    assert _condition(ftj, "Stalled")["status"] == "True"
    job = _get(kubectl, "job", "bad-config-train", namespace)
    assert job["status"].get("failed", 0) == 1, "a config error must not be retried"


@pytest.mark.parametrize(
    ("exit_code", "reason", "advice"),
    [(87, "OutOfMemory", "spec.training.microBatchSize"), (65, "DataInvalid", "input data unusable")],
)
def test_deterministic_failures_fail_at_once_with_their_reason(
    kubectl, namespace, operator, exit_code, reason, advice
) -> None:
    # kwok ends the simulated trainer pod with the exit code the trainer uses for a CUDA OOM / unusable data.
    _prepare_namespace(kubectl, namespace)
    name = f"exit-{exit_code}"
    _apply(
        kubectl,
        namespace,
        _finetunejob(name, podMetadata={"annotations": {"kwok.mmft.io/exit-code": str(exit_code)}}),
    )
    kubectl("wait", f"ftj/{name}", "-n", namespace, "--for=condition=Failed", "--timeout=120s")
    ftj = _get(kubectl, "ftj", name, namespace)
    assert (ftj["status"]["phase"], ftj["status"]["reason"]) == ("Failed", reason)
    assert advice in _condition(ftj, "Failed")["message"]
    job = _get(kubectl, "job", f"{name}-train", namespace)
    assert job["status"].get("failed", 0) == 1, "backoffLimit is 2: the podFailurePolicy must fail the Job at once"
    assert ftj["status"]["failures"] == 1


def test_oom_killed_is_reported_as_such(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(
        kubectl,
        namespace,
        _finetunejob(
            "oom", backoffLimit=0, podMetadata={"annotations": {"kwok.mmft.io/terminated-reason": "OOMKilled"}}
        ),
    )
    kubectl("wait", "ftj/oom", "-n", namespace, "--for=condition=Failed", "--timeout=120s")
    assert _get(kubectl, "ftj", "oom", namespace)["status"]["reason"] == "OOMKilled"


def test_gpu_type_no_node_has_is_surfaced_as_unschedulable(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    document = _finetunejob("no-such-gpu")
    # Eight GPUs: the count Autopilot offers for this card (a single one is refused at admission, not unschedulable).
    document["spec"]["compute"].update({"accelerator": "nvidia-h100-mega-80gb", "gpusPerNode": 8, "spot": True})
    _apply(kubectl, namespace, document)
    stalled = wait_for(
        lambda: (
            (c := _condition(_get(kubectl, "ftj", "no-such-gpu", namespace), "Stalled")) and c["status"] == "True" and c
        ),
        timeout=90,
        what="Stalled=True",
    )
    assert stalled["reason"] == "Unschedulable"
    assert "node" in stalled["message"]
    assert _get(kubectl, "ftj", "no-such-gpu", namespace)["status"]["phase"] == "Pending"


def test_progress_reported_by_the_trainer_reaches_status_and_printer_columns(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(
        kubectl, namespace, _finetunejob("progress", podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "600"}})
    )
    wait_for(
        lambda: _get(kubectl, "ftj", "progress", namespace).get("status", {}).get("phase") == "Running", what="Running"
    )
    report = {
        "phase": "Running",
        "updatedAt": "2026-11-29T12:00:00Z",
        "progress": {
            "step": 120,
            "totalSteps": 1000,
            "loss": 0.4321,
            "learningRate": 1.9e-5,
            "samplesPerSecond": 9.5,
            "etaSeconds": 3700,
            "lastCheckpoint": "/outputs/run/checkpoint-100",
        },
    }
    # Written with the workload's own identity: its Role allows exactly this ConfigMap.
    kubectl(
        "patch",
        "configmap",
        "progress-finetunejob-report",
        "-n",
        namespace,
        "--type=merge",
        f"--as=system:serviceaccount:{namespace}:{WORKLOAD_SA}",
        "-p",
        json.dumps({"data": {"report.json": json.dumps(report)}}),
    )
    progress = wait_for(
        lambda: _get(kubectl, "ftj", "progress", namespace)["status"].get("progress"),
        timeout=30,
        what="status.progress",
    )
    assert progress["summary"] == "120/1000 (12%)" and progress["lastCheckpoint"].endswith("checkpoint-100")
    row = kubectl("get", "ftj", "progress", "-n", namespace, "--no-headers").stdout.split()
    assert "120/1000" in row and "0.4321" in row
    assert _condition(_get(kubectl, "ftj", "progress", namespace), "ConfigValid")["reason"] == "PreflightPassed"
    denied = kubectl(
        "auth",
        "can-i",
        "get",
        "secrets",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{WORKLOAD_SA}",
        check=False,
    )
    assert denied.stdout.strip() == "no", "the training pod's identity must not read Secrets"


def test_restricted_pod_security_admits_the_training_and_tensorboard_pods(kubectl, namespace, operator) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    _prepare_namespace(kubectl, namespace)
    _apply(kubectl, namespace, _finetunejob("restricted"))
    kubectl("wait", "ftj/restricted", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    wait_for(
        lambda: (
            _get(kubectl, "deployment", "restricted-tensorboard", namespace).get("status", {}).get("readyReplicas") == 1
        ),
        timeout=60,
        what="TensorBoard ready",
    )
    warnings = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedCreate", "-o", "name").stdout
    assert warnings.strip() == ""


def test_operator_killed_mid_reconcile_converges_without_duplicates(
    kubectl, namespace, cluster, crds, tmp_path: Path
) -> None:
    _prepare_namespace(kubectl, namespace)
    first = OperatorProcess(cluster, tmp_path / "first.log").start()
    for index in range(5):
        _apply(kubectl, namespace, _finetunejob(f"crash-{index}"))
    wait_for(
        lambda: kubectl("get", "configmaps", "-n", namespace, "-o", "name").stdout.count("-axolotl") >= 1,
        what="the first child",
    )
    first.kill()
    second = OperatorProcess(cluster, tmp_path / "second.log").start()
    try:
        for index in range(5):
            kubectl("wait", f"ftj/crash-{index}", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    finally:
        second.stop()
    jobs = kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(jobs) == sorted(f"job.batch/crash-{i}-train" for i in range(5))
    for index in range(5):
        pods = kubectl(
            "get", "pods", "-n", namespace, "-l", f"batch.kubernetes.io/job-name=crash-{index}-train", "-o", "name"
        ).stdout.split()
        assert len(pods) == 1, f"crash-{index}: {pods}"


def test_deleting_a_finetunejob_deletes_its_children(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(kubectl, namespace, _finetunejob("doomed"))
    kubectl("wait", "ftj/doomed", "-n", namespace, "--for=condition=Succeeded", "--timeout=120s")
    kubectl("delete", "ftj", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(
        lambda: (
            kubectl(
                "get",
                "jobs,configmaps,pvc,deployments,services,roles",
                "-n",
                namespace,
                "-l",
                "mmft.io/owner-name=doomed",
                "-o",
                "name",
            ).stdout.strip()
            == ""
        ),
        timeout=60,
        what="garbage collection of the children",
    )


def test_preemption_is_retried_without_spending_the_retry_budget(kubectl, namespace, operator) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(
        kubectl,
        namespace,
        _finetunejob("spot", backoffLimit=0, podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "600"}}),
    )
    wait_for(
        lambda: _get(kubectl, "ftj", "spot", namespace).get("status", {}).get("phase") == "Running", what="Running"
    )
    selector = "batch.kubernetes.io/job-name=spot-train"
    pod = json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"][0]
    # What the kubelet reports when Autopilot reclaims a Spot node: DisruptionTarget, then the container killed.
    pod["status"]["phase"] = "Failed"
    pod["status"]["conditions"] = [
        *[c for c in pod["status"].get("conditions", []) if c["type"] != "Ready"],
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "TerminationByKubelet",
            "message": "Pod was terminated in response to imminent node shutdown.",
            "lastTransitionTime": pod["metadata"]["creationTimestamp"],
        },
        {"type": "Ready", "status": "False", "lastTransitionTime": pod["metadata"]["creationTimestamp"]},
    ]
    for status in pod["status"]["containerStatuses"]:
        status["ready"] = False
        status["state"] = {
            "terminated": {
                "exitCode": 143,
                "reason": "Error",
                "startedAt": pod["metadata"]["creationTimestamp"],
                "finishedAt": pod["metadata"]["creationTimestamp"],
            }
        }
    kubectl("replace", "--subresource=status", "-n", namespace, "-f", "-", input=json.dumps(pod))
    status = wait_for(
        lambda: (
            (s := _get(kubectl, "ftj", "spot", namespace)["status"]).get("preemptions") == 1
            and s["phase"] == "Running"
            and s
        ),
        timeout=90,
        what="a replacement pod running",
    )
    assert status["failures"] == 0
    job = _get(kubectl, "job", "spot-train", namespace)
    assert not any(c["type"] == "Failed" and c["status"] == "True" for c in job["status"].get("conditions", []))


def test_the_workloads_report_writer_reaches_status_through_its_least_privilege_role(
    kubectl, namespace, operator, cluster, tmp_path: Path
) -> None:
    _prepare_namespace(kubectl, namespace)
    _apply(kubectl, namespace, _finetunejob("writer", podMetadata={"annotations": {"kwok.mmft.io/run-seconds": "600"}}))
    wait_for(
        lambda: _get(kubectl, "ftj", "writer", namespace).get("status", {}).get("phase") == "Running", what="Running"
    )
    # The trainer's own code path, authenticated as the pod's ServiceAccount.
    workload_config = token_kubeconfig(kubectl, cluster, tmp_path / "workload.kubeconfig", namespace, WORKLOAD_SA)
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(workload_config)))
    writer = ReportWriter(
        report_file=tmp_path / "report.json", configmap="writer-finetunejob-report", namespace=namespace, core_api=api
    )
    writer.publish(TrainingReport(phase="Running", progress=TrainingProgress(step=7, totalSteps=70, loss=1.25)))
    progress = wait_for(
        lambda: _get(kubectl, "ftj", "writer", namespace)["status"].get("progress"),
        timeout=30,
        what="status.progress from the ReportWriter",
    )
    assert (progress["step"], progress["summary"]) == (7, "7/70 (10%)")
    assert json.loads((tmp_path / "report.json").read_text())["progress"]["loss"] == 1.25


def test_evaluation_results_reach_status_with_every_metric_and_gs_links(
    kubectl, namespace, operator, cluster, tmp_path: Path
) -> None:
    """What `mmft evaluate` publishes (EvaluationResults, through the pod's least-privilege Role) lands in the
    Evaluation's status, kept by the API server's schema: every documented metric, gs:// URIs, the console link."""
    from mmft_evaluator.cli_evaluate import contract_results

    _prepare_namespace(kubectl, namespace)
    evaluation = yaml.safe_load((SAMPLES / "evaluation.yaml").read_text())
    evaluation["metadata"]["name"] = "scored"
    evaluation["spec"]["dataset"] = {"testPath": "/mnt/gcs/data/test.jsonl"}
    evaluation["spec"]["models"] = [{"name": "base", "huggingFace": "google/gemma-3-4b-it"},
                                    {"name": "medgemma", "huggingFace": "google/medgemma-4b-it"}]
    evaluation["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": "600"}}
    _apply(kubectl, namespace, evaluation)
    wait_for(lambda: _get(kubectl, "mmeval", "scored", namespace).get("status", {}).get("phase") == "Running",
             what="Running")
    metrics = {"accuracy": 0.81, "balanced_accuracy": 0.72, "recall": 0.63, "specificity": 0.84,
               "precision": 0.45, "roc_auc": 0.86, "pr_auc": 0.37}
    summary = {"models": {"base": {"metrics": metrics, "threshold": 0.28},
                          "medgemma": {"error": "OutOfMemoryError: CUDA out of memory"}}, "best": "base"}
    mount = "/mnt/gcs/evaluations/gemma3-melanoma"
    workload_config = token_kubeconfig(kubectl, cluster, tmp_path / "workload.kubeconfig", namespace, WORKLOAD_SA)
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(workload_config)))
    ReportWriter(report_file=tmp_path / "report.json", configmap="scored-evaluation-report", namespace=namespace,
                 core_api=api).publish(EvaluationReport(
                     phase="Completed", results=contract_results(summary),
                     outputs=EvaluationOutputs(report=f"{mount}/report.html", predictions=f"{mount}/predictions.jsonl",
                                               metrics=f"{mount}/metrics.json")), force=True)
    status = wait_for(lambda: (s := _get(kubectl, "mmeval", "scored", namespace)["status"]).get("models") and s,
                      timeout=30, what="status.models from the evaluator's report")
    assert status["models"] == [
        {"name": "base", "accuracy": 0.81, "balancedAccuracy": 0.72, "recall": 0.63, "specificity": 0.84,
         "precision": 0.45, "rocAuc": 0.86, "prAuc": 0.37, "threshold": 0.28},
        {"name": "medgemma", "error": "OutOfMemoryError: CUDA out of memory"},
    ]
    assert (status["bestModel"], status["bestBalancedAccuracy"]) == ("base", 0.72)
    bucket = evaluation["spec"]["bucket"]["name"]
    assert status["report"] == f"gs://{bucket}/evaluations/gemma3-melanoma/report.html"
    assert status["predictions"] == f"gs://{bucket}/evaluations/gemma3-melanoma/predictions.jsonl"
    console = "https://console.cloud.google.com/storage/browser"
    assert status["consoleUrl"] == f"{console}/{bucket}/evaluations/gemma3-melanoma"


def _publish_as_workload(kubectl, cluster, tmp_path: Path, namespace: str, configmap: str, report) -> None:
    """Publish ``report`` with the workload's own ReportWriter and identity (its Role allows exactly this
    ConfigMap)."""
    workload_config = token_kubeconfig(kubectl, cluster, tmp_path / "workload.kubeconfig", namespace, WORKLOAD_SA)
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(workload_config)))
    ReportWriter(report_file=tmp_path / "report.json", configmap=configmap, namespace=namespace,
                 core_api=api).publish(report, force=True)


def test_dataset_counts_reach_status_and_printer_columns(kubectl, namespace, operator, cluster, tmp_path: Path) -> None:
    """Every count `mmft dataprep` reports (its own conversion of stats.json) is kept by the API server's schema
    in status.results, and the counts show in the printer columns."""
    from mmft_dataprep.reporting import contract_results
    from mmft_operator.contracts.progress import DatasetPrepReport

    _prepare_namespace(kubectl, namespace)
    prep = yaml.safe_load((SAMPLES / "datasetprep.yaml").read_text())
    prep["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": "600"}}
    _apply(kubectl, namespace, prep)
    wait_for(lambda: _get(kubectl, "dsp", "isic2020", namespace).get("status", {}).get("phase") == "Running",
             what="Running")
    # stats.json's shape (mmft_dataprep.pipeline._stats), each count distinct so a crossed field shows.
    splits = {"train": {"images": 800, "positive": 15, "negative": 785, "patients": 160, "lines": 1570,
                        "linesPositive": 785},
              "validation": {"images": 100, "positive": 2, "negative": 98, "patients": 20, "lines": 100,
                             "linesPositive": 2},
              "test": {"images": 101, "positive": 3, "negative": 98, "patients": 21, "lines": 101,
                       "linesPositive": 3}}
    stats = {"splits": splits, "dropped": {"count": 7, "byReason": {"corrupt": 4, "missing_file": 3}}}
    results = contract_results(stats)
    _publish_as_workload(kubectl, cluster, tmp_path, namespace, "isic2020-datasetprep-report",
                         DatasetPrepReport(phase="Completed", message="prepared", results=results))
    status = wait_for(lambda: _get(kubectl, "dsp", "isic2020", namespace)["status"].get("results"), timeout=30,
                      what="status.results from the dataprep report")
    assert status == results.model_dump()
    assert (status["images"], status["positives"], status["dropped"]) == (1001, 20, 7)
    row = kubectl("get", "dsp", "isic2020", "-n", namespace, "-o", "wide", "--no-headers").stdout.split()
    assert ["1001", "20", "7"] == row[3:6], row


def test_evaluation_progress_reaches_status_and_the_wide_printer_columns(
    kubectl, namespace, operator, cluster, tmp_path: Path
) -> None:
    from mmft_evaluator.cli_evaluate import scoring_progress
    from mmft_evaluator.evaluation import Progress

    _prepare_namespace(kubectl, namespace)
    evaluation = yaml.safe_load((SAMPLES / "evaluation.yaml").read_text())
    evaluation["metadata"]["name"] = "scoring"
    evaluation["spec"]["dataset"] = {"testPath": "/mnt/gcs/data/test.jsonl"}
    evaluation["spec"]["models"] = [{"name": "base", "huggingFace": "google/gemma-3-4b-it"}]
    evaluation["spec"]["podMetadata"] = {"annotations": {"kwok.mmft.io/run-seconds": "600"}}
    _apply(kubectl, namespace, evaluation)
    wait_for(lambda: _get(kubectl, "mmeval", "scoring", namespace).get("status", {}).get("phase") == "Running",
             what="Running")
    progress = scoring_progress(Progress(model="base", done=640, total=3313, rate=61.2, eta=43.7))
    assert isinstance(progress, ScoringProgress)
    _publish_as_workload(kubectl, cluster, tmp_path, namespace, "scoring-evaluation-report",
                         EvaluationReport(phase="Running", message="scoring base", progress=progress))
    status = wait_for(lambda: _get(kubectl, "mmeval", "scoring", namespace)["status"].get("progress"), timeout=30,
                      what="status.progress from the evaluator's report")
    assert status == {**progress.model_dump(exclude_none=True), "summary": "640/3313 (19%)"}
    row = kubectl("get", "mmeval", "scoring", "-n", namespace, "-o", "wide", "--no-headers").stdout.split()
    assert "640/3313" in row and "(19%)" in row, row
