"""The Trainer callback that reports progress, marks complete checkpoints and stops cleanly on preemption."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import TrainerCallback

from .checkpoints import mark_complete
from .preemption import Preempted, PreemptionGuard
from .reporting import RunReporter, Throughput

log = logging.getLogger(__name__)


class MmftCallback(TrainerCallback):
    def __init__(self, reporter: RunReporter, guard: PreemptionGuard) -> None:
        self.reporter = reporter
        self.guard = guard
        self.throughput: Throughput | None = None
        self.stopping = False

    def on_train_begin(self, args, state, control, **kwargs):
        samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.throughput = Throughput(samples_per_step)
        self.throughput.start(state.global_step)
        self.guard.training = True
        self.reporter.phase("Running")
        self.reporter.progress(force=True, step=state.global_step, totalSteps=state.max_steps,
                               epoch=state.epoch or 0.0)

    def on_step_end(self, args, state, control, **kwargs):
        self.reporter.progress(step=state.global_step, totalSteps=state.max_steps, epoch=state.epoch,
                               **self.throughput.measure(state.global_step, state.max_steps))
        if not self.stopping and self.guard.agreed(device=args.device):
            # Here, in the training loop, not in the signal handler: logging takes locks the handler could hold.
            log.warning("preempted (SIGTERM) at step %d: saving a checkpoint, then stopping", state.global_step)
            self.stopping = True
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        fields = {}
        if "loss" in logs:
            fields["loss"] = float(logs["loss"])
        if "learning_rate" in logs:
            fields["learningRate"] = max(0.0, float(logs["learning_rate"]))
        if fields:
            self.reporter.progress(**fields)

    def on_save(self, args, state, control, **kwargs):
        # on_save runs after the Trainer wrote model, optimizer, scheduler, RNG and trainer state.
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            mark_complete(checkpoint, state.global_step)
            self.reporter.progress(force=True, lastCheckpoint=str(checkpoint))
        if self.stopping:
            raise Preempted(state.global_step, str(checkpoint))

    def on_train_end(self, args, state, control, **kwargs):
        self.guard.training = False
