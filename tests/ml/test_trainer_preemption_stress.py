"""SIGTERM while the trainer is writing logs, again and again: every time a complete checkpoint and an exit.

A preempted run once hung: the SIGTERM handler logged while the main thread was inside a write of Axolotl's stream
tee, and waited for the lock its own thread held (no checkpoint before the SIGKILL 25 s later on a Spot node). Here
the real ``mmft train`` (Axolotl, its tee, tqdm, logging every step) runs on the tiny Gemma 3 and gets SIGTERM right
after it printed a training log line, at a random few milliseconds' delay, so the handler lands while the trainer
is writing. Each run resumes from the checkpoint of the one before, so every run's checkpoint is a new one.

MMFT_SIGTERM_STRESS_RUNS sets how many runs (default 3: about a minute each on two loaded cores). A second
process-level stress of the handler alone (50 signals while the write lock is held) is in
tests/unit/test_trainer_preemption.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from trainer_configs import cpu_config, write_config

pytestmark = [pytest.mark.ml, pytest.mark.timeout(1800)]

STRESS_RUNS = int(os.environ.get("MMFT_SIGTERM_STRESS_RUNS", "3"))
# Catches a hang: a preempted tiny run needs seconds to save and exit, even on two loaded cores.
EXIT_LIMIT_SECONDS = 300
# Axolotl's training log line (one per step with logging_steps 1).
TRAINING_LOG_MARK = "'loss':"


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "MMFT_REPORT_FILE": str(tmp_path / "report.json"), "PYTHONUNBUFFERED": "1"}


class SigtermWhileLogging:
    """Reads the trainer's output; right after a training log line, sends SIGTERM after a random short delay."""

    def __init__(self, process: subprocess.Popen, log_path: Path, rng: random.Random) -> None:
        self.process = process
        self.log_path = log_path
        self.rng = rng
        self.signalled = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.log_path.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                if TRAINING_LOG_MARK in line and not self.signalled.is_set():
                    threading.Event().wait(self.rng.uniform(0, 0.05))
                    self.process.send_signal(signal.SIGTERM)
                    self.signalled.set()


def test_sigterm_while_writing_logs_always_saves_a_checkpoint_and_exits(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                                                       process_groups):
    from mmft_trainer.checkpoints import is_complete, newest_complete
    from mmft_trainer.preemption import PREEMPTED_EXIT_CODE

    output_dir = tmp_path / "out"
    # Far more steps than the runs take; checkpoints only from SIGTERM (save_steps beyond max_steps).
    config = write_config(tmp_path / "axolotl.yaml", cpu_config(
        tiny_gemma3_dir, tiny_chat_dataset, output_dir, max_steps=10_000, save_steps=100_000,
        save_total_limit=STRESS_RUNS + 1, logging_steps=1, gradient_accumulation_steps=1))
    rng = random.Random(18)
    previous_step = 0
    for run in range(STRESS_RUNS):
        process = process_groups.start(
            [sys.executable, "-m", "mmft_trainer", "train", str(config)], env=_env(tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        log = tmp_path / f"run-{run}.log"
        sender = SigtermWhileLogging(process, log, rng)
        try:
            process.wait(timeout=EXIT_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {run}: still running {EXIT_LIMIT_SECONDS} s after start (SIGTERM sent: "
                        f"{sender.signalled.is_set()}); log tail: {log.read_text()[-3000:]}")
        sender.thread.join(timeout=30)
        output = log.read_text()
        assert sender.signalled.is_set(), f"run {run} ended before training logged: {output[-3000:]}"
        assert process.returncode == PREEMPTED_EXIT_CODE, f"run {run}: {output[-3000:]}"
        saved = newest_complete(output_dir)
        assert saved is not None and is_complete(saved), f"run {run}: no complete checkpoint after SIGTERM"
        step = int(saved.name.split("-")[1])
        assert step > previous_step, f"run {run}: checkpoint-{step} is not newer than checkpoint-{previous_step}"
        report = json.loads((tmp_path / "report.json").read_text())
        assert "preempted" in report["message"] and report["progress"]["lastCheckpoint"] == str(saved)
        if run:
            assert f"resuming from {output_dir / f'checkpoint-{previous_step}'}" in output
        previous_step = step
