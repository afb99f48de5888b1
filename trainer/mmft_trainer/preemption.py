"""SIGTERM handling for Spot preemption (Autopilot gives a Spot pod at most 25 s after SIGTERM).

Before training starts there is nothing worth saving, so SIGTERM ends the process at once. During training the
signal only raises a flag; the training callback then saves a checkpoint at the end of the current optimizer step,
stops, and raises :class:`Preempted` so that nothing else (final save, export) runs in the grace period.
"""

from __future__ import annotations

import logging
import signal

log = logging.getLogger(__name__)

# 128 + SIGTERM: what the pod would have exited with had it not caught the signal. The Job's restart resumes.
PREEMPTED_EXIT_CODE = 143


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

    def _on_sigterm(self, _signum, _frame) -> None:
        self.requested = True
        if not self.training:
            raise Preempted()
        log.warning("SIGTERM received: saving a checkpoint at the end of this step, then stopping")

    def agreed(self, device=None) -> bool:
        """Whether any rank was asked to stop, so that all ranks save and stop at the same step."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        import torch

        flag = torch.tensor([1 if self.requested else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
