"""`mmft train` end to end on CPU with real Axolotl and the tiny Gemma 3: LoRA with export to a GCS emulator,
QLoRA, and a run killed with SIGTERM that resumes and ends at the uninterrupted run's step."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainer_configs import cpu_config, write_config

pytestmark = [pytest.mark.ml, pytest.mark.timeout(600)]

FAKE_HF_TOKEN = "hf_mmftTestTokenThatMustNeverBeLogged"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gcs_emulator(process_groups):
    """A real JSON-API GCS emulator (gcp-storage-emulator) on a loopback port, with bucket 'models'."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = _free_port()
    process = process_groups.start(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    host = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the GCS emulator did not start")
            time.sleep(0.2)
    client = storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": host})
    client.create_bucket("models")
    yield host, client


def _env(tmp_path: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update({"MMFT_REPORT_FILE": str(tmp_path / "report.json"), "HF_TOKEN": FAKE_HF_TOKEN,
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def _train(command: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert FAKE_HF_TOKEN not in result.stdout + result.stderr, "the HF token leaked into the logs"
    return result


def _status(report: dict) -> dict:
    """What the operator's FineTuneJob status composition makes of a report, read as the engine reads it."""
    from mmft_operator.api.finetunejob import FineTuneJobSpec
    from mmft_operator.builders.common import Owner
    from mmft_operator.contracts.progress import WorkloadReport
    from mmft_operator.reconcile.engine import Observed
    from mmft_operator.reconcile.finetunejob import FineTuneJobReconciler
    from mmft_operator.status import workload

    spec = FineTuneJobSpec.model_validate({"baseModel": "google/gemma-3-4b-it", "bucket": {"name": "models"},
                                           "dataset": {"trainPath": "/data/train.jsonl"}, "training": {"maxSteps": 4}})
    verdict = workload.WorkloadVerdict(phase=workload.SUCCEEDED, reason="Succeeded", message="")
    observed = Observed(job=None, pods=[], report=WorkloadReport.from_json(json.dumps(report)), verdict=verdict)
    return FineTuneJobReconciler().extra_status(Owner("FineTuneJob", "lora", "ml", "u-1"), spec, observed)


def _crc32c(path: Path) -> str:
    from mmft_storage.gcs import crc32c_base64

    return crc32c_base64(path)


def test_lora_trains_reports_syncs_tensorboard_and_exports_to_gcs(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                                                  gcs_emulator):
    host, client = gcs_emulator
    output_dir, fuse_dir = tmp_path / "out", tmp_path / "gcsfuse" / "tensorboard"
    config = write_config(tmp_path / "axolotl.yaml", cpu_config(tiny_gemma3_dir, tiny_chat_dataset, output_dir))

    result = _train(["mmft", "train", str(config), "--export-uri", "gs://models/runs/lora", "--export", "both",
                     "--tensorboard-sync-dir", str(fuse_dir), "--tensorboard-sync-interval", "1"],
                    _env(tmp_path, STORAGE_EMULATOR_HOST=host))
    assert result.returncode == 0, result.stderr[-4000:]

    report = _report(tmp_path)
    assert report["phase"] == "Completed"
    progress = report["progress"]
    assert progress["step"] == progress["totalSteps"] == 4
    assert progress["loss"] > 0 and progress["samplesPerSecond"] > 0 and progress["etaSeconds"] == 0
    # Start-up stages and throughput (peak GPU memory needs a GPU: Axolotl logs it only on one).
    assert progress["modelLoadSeconds"] > 0 and progress["firstStepSeconds"] > 0
    assert progress["tokensPerSecond"] > 0 and "peakGpuMemoryGiB" not in progress
    assert progress["lastCheckpoint"] == str(output_dir / "checkpoint-4")
    assert report["outputs"] == {"outputDir": str(output_dir), "tensorboardDir": str(fuse_dir),
                                 "adapterUri": "gs://models/runs/lora/adapter",
                                 "mergedUri": "gs://models/runs/lora/merged"}
    assert json.loads((output_dir / "mmft-outputs.json").read_text()) == report["outputs"]
    # The callback writes every field of the contract (peak GPU memory only on a GPU), and each reaches status.
    from mmft_operator.contracts.progress import TrainingProgress

    assert set(progress) == set(TrainingProgress.model_fields) - {"peakGpuMemoryGiB"}
    status = _status(report)
    assert {name: value for name, value in status["progress"].items() if name != "summary"} == progress
    assert {name: status["outputs"][name] for name in report["outputs"]} == report["outputs"]
    assert (output_dir / "adapter_model.safetensors").is_file()
    assert list(fuse_dir.rglob("*tfevents*")), "no TensorBoard event file reached the sync directory"

    stored = {blob.name: blob for blob in client.list_blobs("models")}
    for local_dir, prefix in ((output_dir, "runs/lora/adapter"), (output_dir / "merged", "runs/lora/merged")):
        for name in ("adapter_model.safetensors", "adapter_config.json") if prefix.endswith("adapter") else (
                "model.safetensors", "config.json", "tokenizer.json"):
            blob = stored[f"{prefix}/{name}"]
            assert blob.crc32c == _crc32c(local_dir / name), f"{prefix}/{name} differs from the local file"
    assert not any("checkpoint-" in name for name in stored), "checkpoints are not part of the export"
    downloaded = stored["runs/lora/adapter/adapter_model.safetensors"].download_as_bytes()
    assert downloaded == (output_dir / "adapter_model.safetensors").read_bytes()
    _assert_merge_changed_the_targeted_weights(tiny_gemma3_dir, output_dir / "merged")


def _assert_merge_changed_the_targeted_weights(base_dir: Path, merged_dir: Path) -> None:
    from safetensors.torch import load_file

    base, merged = load_file(base_dir / "model.safetensors"), load_file(merged_dir / "model.safetensors")
    assert not any("lora_" in name for name in merged)
    # Checkpoints keep the original (pre-transformers-5) names, e.g. language_model.model.layers.0...
    name = next(name for name in base
                if "language_model" in name and name.endswith("layers.0.self_attn.q_proj.weight"))
    assert not base[name].equal(merged[name]), "the merged q_proj equals the base: the adapter was not merged"
    vision = next(name for name in base if "vision_tower" in name and name.endswith("q_proj.weight"))
    assert base[vision].equal(merged[vision]), "an untargeted vision weight changed"


def test_qlora_4bit_trains_and_a_failed_export_is_reported(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                                           gcs_emulator):
    host, _client = gcs_emulator
    output_dir = tmp_path / "out"
    config = write_config(tmp_path / "axolotl.yaml", cpu_config(
        tiny_gemma3_dir, tiny_chat_dataset, output_dir, adapter="qlora", load_in_4bit=True, max_steps=2))
    result = _train([sys.executable, "-m", "mmft_trainer", "train", str(config),
                     "--export-uri", "gs://no-such-bucket/run"], _env(tmp_path, STORAGE_EMULATOR_HOST=host))

    adapter_config = json.loads((output_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8
    assert (output_dir / "adapter_model.safetensors").stat().st_size > 0
    assert result.returncode == 1, result.stderr[-4000:]
    report = _report(tmp_path)
    assert report["progress"]["step"] == 2
    assert report["phase"] == "Failed"
    assert report["message"].startswith("export to gs://no-such-bucket/run failed: NotFound")
    assert "adapterUri" not in report["outputs"]

    # The Job's next pod (the export failed, the volume stayed): no training step past max_steps, only the export.
    retry = _train([sys.executable, "-m", "mmft_trainer", "train", str(config),
                    "--export-uri", "gs://models/runs/qlora-retry"], _env(tmp_path, STORAGE_EMULATOR_HOST=host))
    assert retry.returncode == 0, retry.stderr[-4000:]
    assert "training finished in an earlier run" in retry.stderr
    report = _report(tmp_path)
    assert report["phase"] == "Completed"
    assert report["progress"]["step"] == report["progress"]["totalSteps"] == 2
    assert report["outputs"]["adapterUri"] == "gs://models/runs/qlora-retry/adapter"


def _wait_for_step(tmp_path: Path, process: subprocess.Popen, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be preempted"
        try:
            if _report(tmp_path).get("progress", {}).get("step", 0) >= step:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    pytest.fail(f"training did not reach step {step}")


def test_sigterm_saves_a_checkpoint_and_the_restart_finishes_at_the_same_step(tmp_path, tiny_gemma3_dir,
                                                                              tiny_chat_dataset, process_groups):
    from mmft_trainer.checkpoints import is_complete, newest_complete
    from mmft_trainer.preemption import PREEMPTED_EXIT_CODE

    max_steps = 12
    output_dir = tmp_path / "out"
    config = write_config(tmp_path / "axolotl.yaml", cpu_config(
        tiny_gemma3_dir, tiny_chat_dataset, output_dir, max_steps=max_steps, save_steps=100, save_total_limit=3))
    command = [sys.executable, "-m", "mmft_trainer", "train", str(config)]

    # Output to a file, not a pipe nobody reads until the end: a full pipe would block the trainer.
    log = tmp_path / "train.log"
    with log.open("w") as output:
        process = process_groups.start(command, env=_env(tmp_path), stdout=output, stderr=subprocess.STDOUT)
    _wait_for_step(tmp_path, process, 2)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=300)  # catches a hang (the fixture then kills the process group)
    assert process.returncode == PREEMPTED_EXIT_CODE, log.read_text()[-4000:]
    saved = newest_complete(output_dir)
    assert saved is not None and is_complete(saved), "SIGTERM did not leave a complete checkpoint"
    saved_step = int(saved.name.split("-")[1])
    assert 2 <= saved_step < max_steps, "save_steps=100: only the SIGTERM save can have written this checkpoint"
    assert "preempted" in _report(tmp_path)["message"]

    # A pod killed while saving leaves a checkpoint directory without mmft's marker: it must never be resumed.
    half_written = output_dir / f"checkpoint-{saved_step + 1}"
    half_written.mkdir()
    (half_written / "adapter_model.safetensors").write_bytes(b"truncated")

    result = _train(command, _env(tmp_path))
    assert result.returncode == 0, result.stderr[-4000:]
    logs = result.stdout + result.stderr
    assert f"removing incomplete checkpoint {half_written}" in logs
    assert f"resuming from {saved}" in logs
    report = _report(tmp_path)
    assert report["phase"] == "Completed" and report["progress"]["step"] == max_steps
    state = json.loads((output_dir / f"checkpoint-{max_steps}" / "trainer_state.json").read_text())
    assert state["global_step"] == max_steps
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == list(range(1, max_steps + 1)), "steps were repeated or skipped across the restart"
