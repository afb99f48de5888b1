"""Axolotl plugin used only by the trainer benchmark: records when each optimizer step ends and peak GPU memory.

It rides along with the real ``mmft train`` (whose own plugin is appended to the config's list), and writes JSON to
``BENCH_TIMING_FILE`` when training ends.
"""

from __future__ import annotations

import json
import os
import time

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback


class StepTimingCallback(TrainerCallback):
    def __init__(self, path: str) -> None:
        self.path = path
        self.step_ends: list[float] = []
        self.samples_per_step = 0
        self.peak_allocated = 0
        self.peak_reserved = 0

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        self.samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.step_ends = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        # The step's kernels must have finished before its end time is read.
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            # Axolotl resets the peak statistics each time it logs memory, so keep the maximum seen per step.
            self.peak_allocated = max(self.peak_allocated, torch.cuda.max_memory_allocated())
            self.peak_reserved = max(self.peak_reserved, torch.cuda.max_memory_reserved())
        self.step_ends.append(time.perf_counter())

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        cuda = torch.cuda.is_available()
        record = {
            "step_ends": self.step_ends,
            "samples_per_step": self.samples_per_step,
            "peak_allocated_bytes": self.peak_allocated,
            "peak_reserved_bytes": self.peak_reserved,
            "device_total_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else 0,
        }
        with open(self.path, "w") as handle:
            json.dump(record, handle)


class TimingPlugin(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        return [StepTimingCallback(os.environ["BENCH_TIMING_FILE"])]
