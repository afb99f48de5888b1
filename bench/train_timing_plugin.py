"""Axolotl plugin used only by the trainer benchmark: records when each optimizer step ends and peak GPU memory.

It rides along with the real ``mmft train`` (whose own plugin is appended to the config's list), and writes JSON to
``BENCH_TIMING_FILE`` when training ends. With ``BENCH_PROFILE_STEPS=FIRST:LAST`` it also runs torch.profiler over
those optimizer steps and writes the kernels' CUDA time by category to ``BENCH_TIMING_FILE`` + ``.profile.txt``;
the timing record lists the profiled steps so the summary can leave them out.
"""

from __future__ import annotations

import json
import os
import time

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback


class StepTimingCallback(TrainerCallback):
    def __init__(self, path: str, profile_steps: tuple[int, int] | None = None) -> None:
        self.path = path
        self.profile_steps = profile_steps
        self.profiler = None
        self.step_ends: list[float] = []
        self.samples_per_step = 0
        self.peak_allocated = 0
        self.peak_reserved = 0
        self.losses: dict[int, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        self.samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.step_ends = [time.perf_counter()]

    def on_step_begin(self, args, state, control, **kwargs):
        import torch

        if self.profile_steps and state.global_step + 1 == self.profile_steps[0] and torch.cuda.is_available():
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        # The step's kernels must have finished before its end time is read.
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            # Axolotl resets the peak statistics each time it logs memory, so keep the maximum seen per step.
            self.peak_allocated = max(self.peak_allocated, torch.cuda.max_memory_allocated())
            self.peak_reserved = max(self.peak_reserved, torch.cuda.max_memory_reserved())
        self.step_ends.append(time.perf_counter())
        if self.profiler is not None and state.global_step == self.profile_steps[1]:
            self.profiler.__exit__(None, None, None)
            steps = self.profile_steps[1] - self.profile_steps[0] + 1
            with open(self.path + ".profile.txt", "w") as handle:
                handle.write(kernel_breakdown(self.profiler, steps))
            self.profiler = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses[state.global_step] = logs["loss"]

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        cuda = torch.cuda.is_available()
        record = {
            "step_ends": self.step_ends,
            "samples_per_step": self.samples_per_step,
            "peak_allocated_bytes": self.peak_allocated,
            "peak_reserved_bytes": self.peak_reserved,
            "device_total_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else 0,
            "profiled_steps": list(self.profile_steps) if self.profile_steps else None,
            "losses": self.losses,
        }
        with open(self.path, "w") as handle:
            json.dump(record, handle)


# Kernel-name patterns, checked in order: where an optimizer step's GPU time goes.
KERNEL_CATEGORIES = [
    ("attention (flash / memory-efficient / cuDNN)", ("flash", "fmha", "attention", "cudnn", "sdpa")),
    ("matmul (cuBLAS / CUTLASS)", ("gemm", "sm90", "cutlass", "xmma", "nvjet", "cublas")),
    ("LoRA Triton kernels", ("lora", "geglu", "swiglu")),
    ("Liger kernels", ("liger", "rms_norm", "rope", "cross_entropy")),
    ("compiled Triton (fused elementwise/norms)", ("triton_",)),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("copies / casts", ("copy", "memcpy", "memset", "cast", "to_copy")),
    ("elementwise / reductions (eager)", ("elementwise", "reduce", "vectorized", "unrolled")),
]


def kernel_breakdown(profiler, steps: int) -> str:
    totals: dict[str, float] = {}
    kernels = []
    for event in profiler.key_averages():
        cuda_us = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        if not cuda_us or event.key.startswith("ProfilerStep"):
            continue
        name = event.key.lower()
        category = next((label for label, keys in KERNEL_CATEGORIES if any(k in name for k in keys)), "other")
        totals[category] = totals.get(category, 0.0) + cuda_us
        kernels.append((cuda_us, event.count, event.key[:110]))
    total = sum(totals.values()) or 1.0
    lines = [f"GPU kernel time per optimizer step, averaged over {steps} profiled steps", ""]
    for category, cuda_us in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"{cuda_us / steps / 1e3:9.1f} ms  {100 * cuda_us / total:5.1f}%  {category}")
    lines += ["", f"{total / steps / 1e3:9.1f} ms  total kernel time", "", "top kernels:"]
    for cuda_us, count, key in sorted(kernels, reverse=True)[:30]:
        lines.append(f"{cuda_us / steps / 1e3:9.2f} ms  x{count // steps:<5} {key}")
    return "\n".join(lines) + "\n"


def _profile_steps() -> tuple[int, int] | None:
    text = os.environ.get("BENCH_PROFILE_STEPS")
    if not text:
        return None
    first, last = (int(part) for part in text.split(":"))
    return first, last


class TimingPlugin(BasePlugin):
    def post_trainer_create(self, cfg, trainer):
        if os.environ.get("BENCH_FULL_HEAD"):
            # A/B: undo mmft's labelled-rows trim (installed at model load) so the head runs over every position.
            from liger_kernel.transformers.model import gemma3, loss_utils

            gemma3.LigerForCausalLMLoss = loss_utils.LigerForCausalLMLoss

    def add_callbacks_post_trainer(self, cfg, trainer):
        return [StepTimingCallback(os.environ["BENCH_TIMING_FILE"], _profile_steps())]
