"""SIGTERM handling for Spot preemption (Autopilot gives a Spot pod at most 25 s after SIGTERM).

The handler only sets a flag and writes one line to the raw stderr descriptor: Python runs it on the main thread
between two bytecodes, possibly while that thread holds a lock (logging's, tqdm's, Axolotl's stream tee), so taking
any lock in it can wait forever for its own thread (seen: ``log.warning`` here hung a preempted run until SIGKILL).

Before training starts there is nothing worth saving: the handler puts back the default action and sends the signal
again, so the process ends at once as SIGTERM ends it (exit code 143), without running Python code. During training
the training callback (:class:`mmft_trainer.callback.MmftCallback`) sees the flag at the end of the optimizer step,
logs, saves a checkpoint, stops and raises :class:`Preempted` so that nothing else (final save, export) runs in the
grace period.
"""

from __future__ import annotations

import os
import signal

# 128 + SIGTERM: what the pod would have exited with had it not caught the signal. The Job's restart resumes.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM

_DURING_TRAINING = b"mmft: SIGTERM received: saving a checkpoint at the end of this step, then stopping\n"
_BEFORE_TRAINING = b"mmft: SIGTERM received before training started: nothing to save, exiting\n"


class Preempted(Exception):
    def __init__(self, step: int | None = None, checkpoint: str | None = None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = f" after step {step}" if step is not None else ""
        saved = f"; checkpoint saved at {checkpoint}" if checkpoint else ""
        super().__init__(f"preempted (SIGTERM){where}{saved}")


class PreemptionGuard:
    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self._previous = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, _frame) -> None:
        # Only async-signal-safe work: a flag, raw writes, signal(2) and kill(2). No logging, no I/O objects.
        self.requested = True
        if self.training:
            _write_stderr(_DURING_TRAINING)
            return
        _write_stderr(_BEFORE_TRAINING)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def agreed(self, device=None) -> bool:
        """Whether any rank was asked to stop, so that all ranks save and stop at the same step."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        import torch

        flag = torch.tensor([1 if self.requested else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def _write_stderr(message: bytes) -> None:
    try:
        os.write(2, message)
    except OSError:  # stderr closed or a full pipe: the flag is what matters
        pass
