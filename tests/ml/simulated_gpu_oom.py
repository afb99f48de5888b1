"""Test-only Axolotl plugin: a simulated CUDA out-of-memory error at the first optimizer step.

A simulation of what cannot happen here (this machine has no GPU): PyTorch's own exception type and message, raised
where a real one is raised, inside the training step, so everything around it (Axolotl, the Trainer, mmft's runner)
is real.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

SIMULATED_MESSAGE = ("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 39.38 GiB "
                     "(simulated: this machine has no GPU)")


class _OutOfMemoryAtFirstStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        import torch

        raise torch.OutOfMemoryError(SIMULATED_MESSAGE)


class SimulatedGpuOutOfMemoryPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [_OutOfMemoryAtFirstStep()]
