"""The Trainer callback that reports progress, marks complete checkpoints and stops cleanly on preemption."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from .checkpoints import mark_complete
from .preemption import Preempted, PreemptionGuard
from .reporting import RunReporter, Throughput, TokenRate

log = logging.getLogger(__name__)

# Keys of Axolotl's training logs: tokens seen when include_tkps (on by default), peak memory since its last log.
AXOLOTL_TOKENS_KEY = "tokens/total"
AXOLOTL_PEAK_MEMORY_KEY = "memory/max_allocated (GiB)"


class MmftCallback(TrainerCallback):
    def __init__(self, reporter: RunReporter, guard: PreemptionGuard, started: float) -> None:
        """``started``: ``time.monotonic()`` when the trainer started (the model-loading stage is measured from it)."""
        self.reporter = reporter
        self.guard = guard
        self.throughput: Throughput | None = None
        self.tokens = TokenRate()
        self.stopping = False
        self._clock = time.monotonic
        self._started = started
        self._train_began: float | None = None
        self._peak_gpu_gib = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not same_on_every_rank(state.global_step, args.device):
            # Each rank picks the newest complete checkpoint itself; ranks that disagree would train out of step.
            raise RuntimeError(f"the ranks resumed from different checkpoints (this one at step {state.global_step})")
        samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        self.throughput = Throughput(samples_per_step)
        self.throughput.start(state.global_step)
        self.guard.training = True
        self._train_began = self._clock()
        self.reporter.phase("Running")
        self.reporter.progress(force=True, step=state.global_step, totalSteps=state.max_steps,
                               epoch=state.epoch or 0.0,
                               modelLoadSeconds=round(self._train_began - self._started, 1))

    def on_step_end(self, args, state, control, **kwargs):
        first_step = {}
        if self._train_began is not None:
            first_step = {"firstStepSeconds": round(self._clock() - self._train_began, 1)}
            self._train_began = None
        self.reporter.progress(force=bool(first_step), step=state.global_step, totalSteps=state.max_steps,
                               epoch=state.epoch, **first_step,
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
        # Axolotl logs the tokens seen (all ranks) and the peak memory since its last log (it resets the peak).
        if AXOLOTL_TOKENS_KEY in logs:
            rate = self.tokens.measure(float(logs[AXOLOTL_TOKENS_KEY]))
            if rate is not None:
                fields["tokensPerSecond"] = rate
        # Off a GPU Axolotl logs 0.0 under the same key: no GPU memory to report.
        if AXOLOTL_PEAK_MEMORY_KEY in logs and args.device.type == "cuda":
            self._peak_gpu_gib = max(self._peak_gpu_gib, float(logs[AXOLOTL_PEAK_MEMORY_KEY]))
            fields["peakGpuMemoryGiB"] = round(self._peak_gpu_gib, 2)
        if fields:
            self.reporter.progress(**fields)

    def on_save(self, args, state, control, **kwargs):
        # on_save runs after the Trainer wrote model, optimizer, scheduler, RNG and trainer state, but each rank
        # writes its own part (its RNG state; its shards when sharded): only once every rank has closed its files
        # (on GCS Fuse: uploaded them) is the checkpoint complete.
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        wait_for_every_rank(args.device)
        if state.is_world_process_zero and checkpoint.is_dir():
            mark_complete(checkpoint, state.global_step)
            self.reporter.progress(force=True, lastCheckpoint=str(checkpoint))
        if self.stopping:
            raise Preempted(state.global_step, str(checkpoint))

    def on_train_end(self, args, state, control, **kwargs):
        self.guard.training = False


def _distributed():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def wait_for_every_rank(device) -> None:  # noqa: ANN001 - torch.device
    """Return once every rank has called this (a collective on the training backend, like the rest of the step)."""
    dist = _distributed()
    if dist is None:
        return
    import torch

    dist.all_reduce(torch.zeros(1, device=device))


def same_on_every_rank(value: int, device) -> bool:  # noqa: ANN001 - torch.device
    dist = _distributed()
    if dist is None:
        return True
    import torch

    low, high = torch.tensor([value], device=device), torch.tensor([-value], device=device)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MIN)
    return int(low.item()) == -int(high.item())
