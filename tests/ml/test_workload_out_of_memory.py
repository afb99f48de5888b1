"""A CUDA out-of-memory error ends the trainer and the evaluator with their own exit code (the Job's
podFailurePolicy fails at once on it, and the resource shows reason OutOfMemory with what to lower)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmft_operator.contracts.exit_codes import OUT_OF_MEMORY
from trainer_configs import cpu_config, write_config

pytestmark = [pytest.mark.ml, pytest.mark.timeout(600)]

ML_TESTS = Path(__file__).parent


def test_the_trainer_exits_with_the_out_of_memory_code_and_says_what_to_lower(tmp_path, tiny_gemma3_dir,
                                                                               tiny_chat_dataset, process_groups):
    config = write_config(tmp_path / "axolotl.yaml", cpu_config(
        tiny_gemma3_dir, tiny_chat_dataset, tmp_path / "out",
        plugins=["simulated_gpu_oom.SimulatedGpuOutOfMemoryPlugin"]))
    env = {**os.environ, "MMFT_REPORT_FILE": str(tmp_path / "report.json"),
           "PYTHONPATH": os.pathsep.join([str(ML_TESTS), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "train.log"
    with log.open("w") as output:
        process = process_groups.start([sys.executable, "-m", "mmft_trainer", "train", str(config)], env=env,
                                       stdout=output, stderr=subprocess.STDOUT)
    process.wait(timeout=300)
    text = log.read_text()
    assert process.returncode == OUT_OF_MEMORY, text[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["phase"] == "Failed"
    assert report["message"].startswith("GPU out of memory: lower micro_batch_size (spec.training.microBatchSize)")
    assert "mmft train: GPU out of memory" in text


def test_the_evaluator_exits_with_the_out_of_memory_code(monkeypatch, capsys):
    import torch
    from mmft_evaluator import cli_evaluate

    def evaluation_that_runs_out_of_gpu_memory(_args):
        # Simulated (no GPU here): the exception PyTorch raises when a CUDA allocation fails.
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB (simulated)")

    monkeypatch.setattr(cli_evaluate, "_evaluate", evaluation_that_runs_out_of_gpu_memory)
    assert cli_evaluate.main(argparse.Namespace()) == OUT_OF_MEMORY
    assert "mmft evaluate: GPU out of memory: lower --batch-size" in capsys.readouterr().err


def test_other_evaluator_errors_are_not_taken_for_out_of_memory(monkeypatch):
    from mmft_evaluator import cli_evaluate

    def evaluation_with_a_bug(_args):
        raise KeyError("labels")

    monkeypatch.setattr(cli_evaluate, "_evaluate", evaluation_with_a_bug)
    with pytest.raises(KeyError):
        cli_evaluate.main(argparse.Namespace())
