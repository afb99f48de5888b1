"""Evaluator throughput: `logprob` scoring (batched, preprocessing in worker processes) against the seed's method
(one image at a time, `generate` forced to --seed-new-tokens tokens since random weights never stop), on the same
images in the same run, through the same code `mmft evaluate` runs (mmft_evaluator.scoring / .execution).

One run measures, in this order, each row printed as a JSON line as soon as it is measured:
the seed's method; the input pipeline alone (images/s it supplies to the GPU); `logprob` end to end with the
eager model; the model alone (one collated batch, no input
pipeline) eager, with each vision SDPA kernel (--attention-variants) and with each torch.compile variant
(--compile-variants; compile time printed separately); a torch.profiler breakdown of one eager forward pass
(vision attention / MLP / other, projector, language model, LM head, and the top GPU kernels); then `logprob`
end to end with the fastest model-only options. --deadline stops launching variants whose estimated time no
longer fits, and the summary is printed either way.

    python bench/eval_throughput.py --arch gemma3-4b --deadline 450 --json-out $OUT/eval_bench.json  # H200
    python bench/eval_throughput.py --arch tiny --images 32 --seed-images 1 --batch-sizes 8 --workers 1  # CPU

`--suite sample` measures the sample Evaluation instead (run_sample_suite): the seed's method on --seed-images
images, `logprob` against `forced-choice` on the same batches, batched `generate` with a static cache, and whole
`mmft evaluate` runs (run_evaluation: model loading, any compile and warm-up included in the wall time) of the
sample's three models saved to disk (base, base + a LoRA adapter of the language model, and another model
reference of the same architecture) over --images images, each with per-model load time, first scores and
steady rate:

    python bench/eval_throughput.py --suite sample --images 3313 --seed-images 8 --json-out $OUT/sample.json  # H200
    python bench/eval_throughput.py --suite sample --arch tiny --images 24 --seed-images 2 --batch-sizes 8 \
        --workers 1 --generate-images 16 --seed-new-tokens 4 --sample-variants forced-choice  # CPU, ~1 minute

`gemma3-4b` is the Gemma-3-4B architecture with random weights (no hub access on the GPU machine): text hidden
2560, 34 layers, 8 heads / 4 KV heads, head_dim 256, intermediate 10240, vocab 262208, sliding window 1024 with
5 local : 1 global layers; SigLIP vision of 27 layers, hidden 1152, 896 px, patch 14, 256 tokens per image.
FLOPs per image are counted by torch's FlopCounterMode on one batch (matmuls and attention), and MFU is
images/s x FLOPs per image over the dense bf16 peak (--peak-tflops, H200 datasheet 989).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evaluator"))
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "storage"))
sys.path.insert(0, str(REPO / "tests" / "ml"))

from mmft_evaluator.examples import read_examples  # noqa: E402
from mmft_evaluator.execution import ExecutionOptions, apply_execution  # noqa: E402
from mmft_evaluator.loading import LoadedModel, load_model, pick_device  # noqa: E402
from mmft_evaluator.model_spec import ModelSpec  # noqa: E402
from mmft_evaluator.scoring import (  # noqa: E402
    PromptCollator,
    answer_token_ids,
    device_batches,
    generate_answers,
    input_pipeline,
    pil_loader,
    score_logprob,
)
from mmft_operator.model_location import format_location  # noqa: E402
from mmft_operator.seed_prompts import SEED_PROMPTS  # noqa: E402

POSITIVE = SEED_PROMPTS.positive_answer
NEGATIVE = SEED_PROMPTS.negative_answer


def gemma3_4b_random(device):
    import gemma3_4b
    import torch
    from tiny_gemma import CHAT_TEMPLATE, build_tokenizer
    from transformers import Gemma3ForConditionalGeneration, Gemma3Processor

    pixels = gemma3_4b.VISION["image_size"]
    try:
        from transformers import Gemma3ImageProcessor as ImageProcessor

        ImageProcessor(size={"height": pixels, "width": pixels})
    except ImportError:  # the torchvision-backed processor needs torchvision; the PIL one does not
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    tokenizer = build_tokenizer()
    processor = Gemma3Processor(
        image_processor=ImageProcessor(
            size={"height": pixels, "width": pixels}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=gemma3_4b.TOKENS_PER_IMAGE,
    )
    processor.tokenizer.padding_side = "left"
    # As in Gemma 3's checkpoints: no attention-pooling head after the vision encoder.
    config = gemma3_4b.config(tokenizer, vision_use_head=False)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    # Gemma 3 initialises the image projection to zero, which would make every score independent of the vision
    # tower, and the eager-vs-optimised score comparison blind to it; random weights everywhere, as elsewhere.
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.02)
    # Random weights never emit EOS on purpose; make sure generation cannot stop early either way.
    model.generation_config.eos_token_id = None
    return LoadedModel(model=model.eval(), processor=processor, device=device)


def tiny_random(device, workdir: Path):
    import torch
    from tiny_gemma import build_tiny_gemma3

    model_dir = build_tiny_gemma3(workdir / "tiny-gemma3")
    loaded = load_model(ModelSpec(name="tiny", model=str(model_dir)), device, workdir / "cache")
    with torch.no_grad():  # as for the 4B model: scores that depend on the vision tower
        projection = loaded.model.model.multi_modal_projector.mm_input_projection_weight
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(0)))
    loaded.model.generation_config.eos_token_id = None
    return loaded


def _write_lesion_jpeg(job: tuple[Path, int, int]) -> None:
    import numpy as np
    from PIL import Image

    path, index, size = job
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy, radius = rng.uniform(0.35, 0.65) * size, rng.uniform(0.35, 0.65) * size, rng.uniform(0.1, 0.3) * size
    blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2)))[..., None]
    pixels = (np.array([220, 170, 150]) * (1 - 0.7 * blob) + rng.normal(0, 6, (size, size, 3))).clip(0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def write_images(workdir: Path, count: int, size: int = 512) -> Path:
    """Distinct lesion-like JPEGs at dataprep's default output size, and a test JSONL pointing at them."""
    from concurrent.futures import ProcessPoolExecutor

    (workdir / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(workdir / "images" / f"bench_{index:05d}.jpg", index, size) for index in range(count)]
    with ProcessPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0)))) as pool:
        list(pool.map(_write_lesion_jpeg, jobs, chunksize=16))
    lines = [
        json.dumps(
            {
                "label": index % 2,
                "messages": [
                    {
                        "role": "system",
                        "content": [
                            {
                                "type": "text",
                                "text": SEED_PROMPTS.system,
                            }
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "path": str(path)},
                            {"type": "text", "text": SEED_PROMPTS.question},
                        ],
                    },
                ],
            }
        )
        for path, index, _ in jobs
    ]
    jsonl = workdir / "test.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    return jsonl


def flops_per_image(loaded, examples, batch: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    inputs = collated_batch(loaded, examples, batch)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        loaded.model(**inputs, logits_to_keep=1, use_cache=False)
    return counter.get_total_flops() / batch


def collated_batch(loaded, examples, batch: int) -> dict:
    dtype = next(loaded.model.parameters()).dtype
    _, inputs = PromptCollator(loaded.processor, pil_loader(Path(tempfile.gettempdir())), dtype)(examples[:batch])
    return {key: value.to(loaded.device) for key, value in inputs.items()}


def model_only_runner(loaded, inputs: dict, repeats: int):
    """Forward passes over one already collated batch: the model's ceiling without the data pipeline."""
    import torch

    def run():
        with torch.inference_mode():
            for _ in range(repeats):
                loaded.model(**inputs, logits_to_keep=1, use_cache=False)

    return run


def pipeline_only(loaded, examples, batch_size: int, workers: int, image_loader) -> dict:
    """The input pipeline alone (workers, host-to-GPU copy, normalisation on the GPU), no model: how many images/s
    it can supply; and whether its GPU-normalised pixels equal the processor's own (worker-normalised) ones."""
    import torch

    dtype = next(loaded.model.parameters()).dtype
    collator, normalizer = input_pipeline(loaded.processor, image_loader, examples, dtype)
    pad = loaded.processor.tokenizer.pad_token_id
    first = {}

    def run():
        with torch.inference_mode():
            for chunk, batch in device_batches(examples, collator, batch_size, workers, loaded.device, dtype, pad,
                                               normalizer=normalizer):
                first.setdefault("batch", (chunk, batch))

    seconds = timed(run, loaded.device)
    chunk, batch = first["batch"]
    _, reference = PromptCollator(loaded.processor, image_loader, dtype)(chunk)
    difference = (batch["pixel_values"].float().cpu() - reference["pixel_values"].float()).abs().max()
    return {"seconds": seconds, "normalized_on_device": normalizer is not None,
            "pixel_max_abs_diff_vs_processor": float(difference)}


class ProgressClock:
    """`score_logprob`'s progress callback: when each batch's scores arrived. The steady rate runs from the first
    batch's scores to the last, so it leaves out the pipeline's start (workers forking, the first batch's
    preprocessing, the first forward pass), which a run pays once per split however many images it scores."""

    def __init__(self):
        self.started = time.perf_counter()
        self.marks: list[tuple[float, int]] = []

    def __call__(self, done: int, _total: int) -> None:
        self.marks.append((time.perf_counter(), done))

    def summary(self) -> dict:
        (first_time, first_done), (last_time, last_done) = self.marks[0], self.marks[-1]
        steady = (last_done - first_done) / (last_time - first_time) if last_time > first_time else None
        return {"first_scores_s": round(first_time - self.started, 2),
                "steady_images_per_s": round(steady, 3) if steady else None}


def batch_scores(loaded, inputs: dict):
    """P(positive) of each row of one collated batch, on the host: compares execution variants' numerics."""
    import torch

    positive_id, negative_id = answer_token_ids(loaded.processor.tokenizer, POSITIVE, NEGATIVE)
    with torch.inference_mode():
        logits = loaded.model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1, :].float()
    return torch.sigmoid(logits[:, positive_id] - logits[:, negative_id]).cpu()


def max_difference(scores, reference) -> float:
    return float(f"{max(abs(float(a) - float(b)) for a, b in zip(scores, reference, strict=True)):.3g}")


def timed(run, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


class Deadline:
    """Seconds left of the run's budget; a variant is launched only if its estimate fits."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, estimate: float) -> bool:
        return self.left() >= estimate


def parse_compile_variant(text: str) -> ExecutionOptions:
    """'vision', 'vision+language', 'vision:max-autotune-no-cudagraphs', optionally '@flash' for the kernel."""
    text, _, kernel = text.partition("@")
    target, _, mode = text.partition(":")
    return ExecutionOptions(compile=target, compile_mode=mode or "default", vision_attention=kernel or "auto")


def variant_name(options: ExecutionOptions) -> str:
    parts = []
    if options.compile != "none":
        parts.append(f"compile-{options.compile.replace('+', '-')}")
        if options.compile_mode != "default":
            parts.append(options.compile_mode)
    if options.vision_attention != "auto":
        parts.append(f"attn-{options.vision_attention}")
    return "_".join(parts) or "eager"


BREAKDOWN_ROWS = (
    ("vision attention: SDPA kernel", "attention_core"),
    ("vision attention: q/k/v/out projections", "attention_projections"),
    ("vision MLP (fc1, GELU, fc2)", "vision_mlp"),
    ("vision other (patch embed, LayerNorm, residual)", "vision_other"),
    ("projector (pool, norm, matmul)", "projector"),
    ("language model (decoder layers, final norm)", "language_model"),
    ("LM head (last position)", "lm_head"),
    ("other (embeddings, masks, merge)", "other"),
)


def _range_hooks(model):
    """Forward hooks that open a profiler range per module of interest; returns the hook handles."""
    import torch

    inner = model.model
    watched = {"forward": model, "vision_tower": inner.vision_tower, "projector": inner.multi_modal_projector,
               "language_model": inner.language_model, "lm_head": model.lm_head}
    for module in inner.vision_tower.modules():
        kind = type(module).__name__
        if kind.endswith("Attention") and hasattr(module, "q_proj"):
            watched[f"attention#{id(module)}"] = module
            for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
                watched[f"attention_projection#{id(module)}.{projection}"] = getattr(module, projection)
        elif kind.endswith("MLP"):
            watched[f"vision_mlp#{id(module)}"] = module
    handles, open_ranges = [], []
    for name, module in watched.items():
        label = f"mmft::{name.split('#')[0]}"

        def enter(_module, _inputs, label=label):
            open_ranges.append(torch.profiler.record_function(label).__enter__())

        def leave(_module, _inputs, _output):
            open_ranges.pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def profile_breakdown(loaded, inputs: dict, batches: int, top_kernels: int = 12) -> dict:
    """Device time (CPU time on CPU) of one eager forward pass per part of the model, from torch.profiler ranges
    around each module (kernels are attributed to the range that launched them), plus the top kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = loaded.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    handles = _range_hooks(loaded.model)
    try:
        with torch.inference_mode(), profile(activities=activities) as profiler:
            for _ in range(batches):
                loaded.model(**inputs, logits_to_keep=1, use_cache=False)
            if cuda:
                torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()
    from torch.autograd import DeviceType

    spent, kernels = defaultdict(float), defaultdict(lambda: [0.0, 0])
    for event in profiler.events():
        if event.name.startswith("mmft::"):
            # The CPU-side range owns every kernel launched inside it; its GPU-side twin would count them twice.
            if event.device_type == DeviceType.CPU:
                spent[event.name[len("mmft::"):]] += event.device_time_total if cuda else event.cpu_time_total
        elif (event.device_type == DeviceType.CUDA) if cuda else (event.device_type == DeviceType.CPU):
            kernels[event.name][0] += event.device_time_total if cuda else event.self_cpu_time_total
            kernels[event.name][1] += 1
    parts = {
        "attention_core": spent.get("attention", 0) - spent.get("attention_projection", 0),
        "attention_projections": spent.get("attention_projection", 0),
        "vision_mlp": spent.get("vision_mlp", 0),
        "projector": spent.get("projector", 0),
        "language_model": spent.get("language_model", 0),
        "lm_head": spent.get("lm_head", 0),
    }
    parts["vision_other"] = spent.get("vision_tower", 0) - spent.get("attention", 0) - parts["vision_mlp"]
    parts["other"] = spent.get("forward", 0) - spent.get("vision_tower", 0) - sum(
        parts[key] for key in ("projector", "language_model", "lm_head"))
    total = max(spent.get("forward", 0), 1e-9)
    table = {key: {"ms_per_batch": round(value / 1000 / batches, 2), "share": round(value / total, 4)}
             for key, value in parts.items()}
    top = [{"kernel": name[:100], "ms_per_batch": round(spent_us / 1000 / batches, 2),
            "share": round(spent_us / total, 4), "calls": calls // batches}
           for name, (spent_us, calls) in sorted(kernels.items(), key=lambda item: -item[1][0])[:top_kernels]]
    return {"time": "device" if cuda else "cpu", "forward_ms_per_batch": round(total / 1000 / batches, 2),
            "parts": table, "top_kernels": top}


def print_breakdown(breakdown: dict, batch: int) -> None:
    print(f"\nforward pass breakdown, batch {batch}: {breakdown['time']} time (sum of kernel durations; idle gaps "
          f"excluded) {breakdown['forward_ms_per_batch']} ms per batch, wall time of an unprofiled eager pass "
          f"{breakdown['wall_ms_per_batch']} ms")
    print(f"| {'part':<50} | {'ms/batch':>9} | {'share':>6} |")
    print(f"| {'-' * 50} | {'-' * 9}:| {'-' * 6}:|")
    for title, key in BREAKDOWN_ROWS:
        row = breakdown["parts"][key]
        print(f"| {title:<50} | {row['ms_per_batch']:>9.2f} | {row['share']:>6.1%} |")
    print("top kernels (self time):")
    for row in breakdown["top_kernels"]:
        print(f"  {row['ms_per_batch']:>9.2f} ms {row['share']:>6.1%} x{row['calls']:<4} {row['kernel']}")
    sys.stdout.flush()


class Bench:
    """Records rows (printed as JSON lines at once, and rewritten to --json-out) and keeps the summary."""

    def __init__(self, args, flops: float, results: dict):
        self.args, self.flops, self.results = args, flops, results

    def record(self, name: str, count: int, seconds: float, **extra) -> dict:
        rate = count / seconds
        row = {"images": count, "seconds": round(seconds, 2), "images_per_s": round(rate, 3)}
        if self.flops and name != "seed_generate" and not name.startswith("pipeline_only"):
            row["mfu"] = round(rate * self.flops / (self.args.peak_tflops * 1e12), 4)
        row.update(extra)
        self.note(name, row)
        return row

    def note(self, name: str, value) -> None:
        self.results[name] = value
        print(json.dumps({name: value}), flush=True)
        self.save()

    def save(self) -> None:
        if self.args.json_out:
            Path(self.args.json_out).write_text(json.dumps(self.results, indent=2) + "\n")


def run_variant(bench: Bench, loaded, inputs: dict, options: ExecutionOptions, repeats: int, name: str,
                reference, eager_row: dict):
    """Model-only passes with ``options`` installed: the first pass (compile, autotune) is timed apart, and its
    scores are compared with the eager model's (``reference``)."""
    import torch

    device = loaded.device
    if options.compile != "none":
        torch._dynamo.reset()
    applied = apply_execution(loaded.model, options, device)
    try:
        scores = []
        first = timed(lambda: scores.append(batch_scores(loaded, inputs)), device)
        errors = applied.compile_errors()
        if errors:
            bench.note(name, {"error": f"compile fell back to eager: {errors}", "first_pass_s": round(first, 1)})
            return None
        size = inputs["input_ids"].shape[0]
        seconds = timed(model_only_runner(loaded, inputs, repeats), device)
        timing = {"first_pass_s": round(first, 1)}
        if options.compile != "none":
            timing["compile_s"] = round(max(0.0, first - seconds / repeats), 1)
            timing["compile_break_even_images"] = _break_even(size * repeats / seconds, timing["compile_s"],
                                                              eager_row["images_per_s"])
        return bench.record(name, size * repeats, seconds, options=options.label(), **timing,
                            max_score_diff_vs_eager=max_difference(scores[0], reference))
    except Exception as error:  # noqa: BLE001 - one variant failing (kernel not eligible, OOM) must not end the run
        bench.note(name, {"error": " ".join(f"{type(error).__name__}: {error}".split())[:400],
                          "options": options.label()})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None
    finally:
        applied.restore()


class ModelClock:
    """`run_evaluation`'s progress sink plus timed model loads: per model of an end-to-end Evaluation, its load time,
    when its first scores arrived and its steady rate (first scores to last)."""

    def __init__(self):
        self.started = time.perf_counter()
        self.models: dict[str, dict] = {}
        self.loads: list[float] = []
        self.current: str | None = None

    def __call__(self, progress) -> None:
        now = time.perf_counter() - self.started
        entry = self.models.setdefault(progress.model, {"start": now, "start_done": progress.done, "marks": []})
        if progress.done > entry["start_done"]:  # the model's own scores (the start call repeats the last rate)
            entry["marks"].append((now, progress.done))

    def timed_loader(self, load):
        def load_model(*args, **kwargs):
            started = time.perf_counter()
            loaded = load(*args, **kwargs)
            self.loads.append(time.perf_counter() - started)
            return loaded

        return load_model

    def summary(self, wall: float) -> dict:
        names = list(self.models)
        rows = {}
        for index, name in enumerate(names):
            entry = self.models[name]
            end = self.models[names[index + 1]]["start"] if index + 1 < len(names) else wall
            marks = entry["marks"]
            row = {"seconds": round(end - entry["start"], 1)}
            if index < len(self.loads):
                row["load_s"] = round(self.loads[index], 1)
            if marks:
                row["first_scores_s"] = round(marks[0][0] - entry["start"], 1)
                if marks[-1][0] > marks[0][0]:
                    row["steady_images_per_s"] = round(
                        (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]), 1)
            rows[name] = row
        return rows


def save_sample_models(device, workdir: Path, arch: str) -> dict[str, str]:
    """The sample's three models on disk, as an Evaluation pod finds them: a base model, a LoRA adapter of its
    language model (what a FineTuneJob exports: attention and MLP projections of the text layers), and a model of
    the same architecture in place of MedGemma (another model reference, so it shares nothing with the base)."""
    import torch
    from peft import LoraConfig, get_peft_model

    loaded = gemma3_4b_random(device) if arch == "gemma3-4b" else tiny_random(device, workdir)
    base, medgemma, adapter = workdir / "base", workdir / "medgemma", workdir / "tuned-adapter"
    loaded.model.save_pretrained(base)
    loaded.processor.save_pretrained(base)
    config = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
    adapted = get_peft_model(loaded.model, config)
    adapted.save_pretrained(adapter)
    # Another model reference with the same files (hard links: no second 8.6 GB write): loaded, and never shared
    # with the base, as a model with other weights; its speed is the same.
    shutil.copytree(base, medgemma, copy_function=os.link)
    del loaded, adapted
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"base": str(base), "tuned": format_location(str(base), str(adapter)), "medgemma": str(medgemma)}


def sample_evaluation(jsonl: Path, models: dict[str, str], workdir: Path, args, **options) -> dict:
    """One whole `mmft evaluate` run (mmft_evaluator.evaluation.run_evaluation) of the sample's models, model
    loading and any compile included in its wall time."""
    from mmft_evaluator import loading
    from mmft_evaluator.evaluation import EvaluateOptions, run_evaluation
    from mmft_evaluator.model_spec import parse_model_arguments

    clock = ModelClock()
    original = loading.load_model
    loading.load_model = clock.timed_loader(original)
    try:
        started = time.perf_counter()
        summary = run_evaluation(EvaluateOptions(
            test_jsonl=str(jsonl), models=tuple(parse_model_arguments([f"{k}={v}" for k, v in models.items()])),
            output_dir=workdir / f"out-{options.get('compile', 'none')}", batch_size=args.batch_sizes_list[0],
            workers=args.workers, positive_answer=POSITIVE, negative_answer=NEGATIVE, threshold_policy="fixed",
            cache_dir=workdir / "cache", **options), clock)
        wall = time.perf_counter() - started
    finally:
        loading.load_model = original
    errors = {name: result["error"] for name, result in summary["models"].items() if result.get("error")}
    images = summary["examples"] * len(models)
    return {"wall_s": round(wall, 1), "images": images, "images_per_s": round(images / wall, 1),
            "models": clock.summary(wall), "errors": errors or None,
            "options": {key: value for key, value in options.items()}}


def run_sample_suite(args) -> int:
    """The sample Evaluation's numbers in one run: the seed's method, batched `generate` (static cache), first-token
    vs forced-choice cost, and whole `mmft evaluate` runs of the sample's three models over --images images."""
    import torch

    deadline = Deadline(args.deadline)
    device = pick_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="mmft-eval-sample-"))
    results: dict = {"suite": "sample", "arch": args.arch, "torch": torch.__version__,
                     "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                     "workers": args.workers}
    bench = Bench(args, 0.0, results)
    started = time.monotonic()
    jsonl = write_images(workdir, args.images)
    examples = read_examples(jsonl, POSITIVE, NEGATIVE)
    bench.note("write_images_s", round(time.monotonic() - started, 1))
    started = time.monotonic()
    models = save_sample_models(device, workdir, args.arch)
    bench.note("save_models_s", round(time.monotonic() - started, 1))

    started = time.monotonic()
    loaded = load_model(ModelSpec(name="base", model=models["base"]), device, workdir / "cache")
    bench.note("load_base_s", round(time.monotonic() - started, 1))
    common = dict(positive_answer=POSITIVE, negative_answer=NEGATIVE, image_loader=pil_loader(workdir / "cache"))
    generate_answers(loaded, examples[:1], batch_size=1, workers=0, max_new_tokens=2, **common)  # warm-up
    seed = examples[: args.seed_images]
    bench.record("seed_generate", len(seed), timed(lambda: generate_answers(
        loaded, seed, batch_size=1, workers=0, max_new_tokens=args.seed_new_tokens,
        min_new_tokens=args.seed_new_tokens, **common), device), new_tokens=args.seed_new_tokens,
        how="one image at a time, preprocessing on the main thread, dynamic cache (the seed's notebook)")

    size = args.batch_sizes_list[0]
    inputs = collated_batch(loaded, examples, size)
    from mmft_evaluator.scoring import score_forced_choice

    passes = 3
    for name, score in (("logprob", score_logprob), ("forced-choice", score_forced_choice)):
        batch_examples = examples[:size]
        score(loaded, batch_examples, batch_size=size, workers=0, **common)  # warm-up
        seconds = timed(lambda score=score, batch_examples=batch_examples: [
            score(loaded, batch_examples, batch_size=size, workers=0, **common) for _ in range(passes)], device)
        bench.note(f"{name}_b{size}_main_thread", {"images": passes * size, "seconds": round(seconds, 2),
                                                 "images_per_s": round(passes * size / seconds, 1)})
    del inputs

    def generate_row() -> None:
        images = examples[: args.generate_images]
        if not deadline.allows(args.generate_estimate):
            bench.note(f"generate_b{size}_static", {"skipped": f"deadline: {deadline.left():.0f}s left"})
            return
        clock = ProgressClock()
        try:
            seconds = timed(lambda: generate_answers(
                loaded, images, batch_size=size, workers=args.workers, max_new_tokens=args.seed_new_tokens,
                min_new_tokens=args.seed_new_tokens, on_progress=clock, static_cache=device.type == "cuda",
                **common), device)
            row = bench.record(f"generate_b{size}_static", len(images), seconds, new_tokens=args.seed_new_tokens,
                               **clock.summary())
            row["vs_seed"] = round(row["images_per_s"] / results["seed_generate"]["images_per_s"], 1)
            bench.note(f"generate_b{size}_static", row)
        except Exception as error:  # noqa: BLE001 - the other rows still count
            message = " ".join(f"{type(error).__name__}: {error}".split())[:400]
            bench.note(f"generate_b{size}_static", {"error": message})

    if args.generate_first:
        generate_row()
    del loaded
    if device.type == "cuda":
        torch.cuda.empty_cache()

    for variant in filter(None, args.sample_variants.split(",")):
        method, _, compile_target = variant.partition(":")
        share = not method.endswith("-unshared")
        method = method.removesuffix("-unshared")
        options = {"method": method, "compile": compile_target or "none", "share_image_features": share}
        name = f"sample_{method}_{compile_target or 'eager'}" + ("" if share else "_unshared")
        estimate = args.sample_estimate * (1.4 if compile_target else 1.0)
        if not deadline.allows(estimate):
            bench.note(name, {"skipped": f"deadline: {deadline.left():.0f}s left, needs ~{estimate:.0f}s"})
            continue
        try:
            bench.note(name, sample_evaluation(jsonl, models, workdir, args, **options))
        except Exception as error:  # noqa: BLE001
            bench.note(name, {"error": " ".join(f"{type(error).__name__}: {error}".split())[:400]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if not args.generate_first:
        loaded = load_model(ModelSpec(name="base", model=models["base"]), device, workdir / "cache")
        generate_row()
    return _finish(bench, results, args, deadline, device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("gemma3-4b", "tiny"), default="gemma3-4b")
    parser.add_argument("--images", type=int, default=1024, help="images scored by the end-to-end logprob runs")
    parser.add_argument("--eager-images", type=int, default=0,
                        help="images of the eager end-to-end row, the score reference (0: --images); fewer leaves "
                             "device time for the compiled rows")
    parser.add_argument("--seed-images", type=int, default=2, help="images of the seed's one-at-a-time method")
    parser.add_argument("--seed-new-tokens", type=int, default=100)
    parser.add_argument("--batch-sizes", default="64",
                        help="comma-separated batch sizes of the eager logprob/model-only rows; the first one is "
                             "used for every variant")
    parser.add_argument("--workers", type=int, default=max(1, min(15, len(os.sched_getaffinity(0)) - 1)))
    parser.add_argument("--naive-images", type=int, default=0,
                        help="images of the batched logprob run with preprocessing on the main thread (0: skip)")
    parser.add_argument("--model-only-images", type=int, default=256,
                        help="images per model-only row (rounded to whole batches, at least 2)")
    parser.add_argument("--attention-variants", default="flash,efficient,cudnn",
                        help="vision SDPA kernels timed model-only (comma-separated; empty: none)")
    parser.add_argument("--compile-variants", default="vision,vision+language,vision:max-autotune-no-cudagraphs",
                        help="torch.compile variants timed model-only, in order: TARGET[:MODE][@KERNEL]")
    parser.add_argument("--compile-estimate", type=float, default=90.0,
                        help="seconds a compile variant is assumed to take (max-autotune: twice that)")
    parser.add_argument("--end-to-end-variant", default="best",
                        help="options of the last end-to-end logprob row: best (fastest model-only row) or "
                             "TARGET[:MODE][@KERNEL], e.g. none@cudnn or vision")
    parser.add_argument("--profile-batches", type=int, default=2, help="eager forward passes profiled (0: skip)")
    parser.add_argument("--deadline", type=float, default=480.0,
                        help="seconds from start after which no new variant is launched if it would not fit")
    parser.add_argument("--json-out", help="also write the results (rewritten after every row) to this file")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H200: 989)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--suite", choices=("variants", "sample"), default="variants",
                        help="variants: the execution variants above; sample: the sample Evaluation's numbers "
                             "(seed's method, batched generate, whole `mmft evaluate` runs of three models)")
    parser.add_argument("--sample-variants", default="forced-choice,forced-choice:vision+language",
                        help="sample suite: whole runs, METHOD[-unshared][:COMPILE], in order, while time is left")
    parser.add_argument("--sample-estimate", type=float, default=220.0,
                        help="sample suite: seconds a whole eager run is assumed to take (compiled: 1.4x)")
    parser.add_argument("--generate-images", type=int, default=128,
                        help="sample suite: images of the batched generate row")
    parser.add_argument("--generate-estimate", type=float, default=90.0)
    parser.add_argument("--generate-first", action="store_true",
                        help="sample suite: the batched generate row before the whole runs (default: after)")
    args = parser.parse_args()
    args.batch_sizes_list = [int(size) for size in args.batch_sizes.split(",")]
    if args.suite == "sample":
        return run_sample_suite(args)

    import torch

    deadline = Deadline(args.deadline)
    device = pick_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="mmft-eval-bench-"))
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    jsonl = write_images(workdir, max(args.images, args.seed_images, args.naive_images, *batch_sizes))
    examples = read_examples(jsonl, POSITIVE, NEGATIVE)
    started = time.monotonic()
    loaded = gemma3_4b_random(device) if args.arch == "gemma3-4b" else tiny_random(device, workdir)
    build_s = time.monotonic() - started
    answer_token_ids(loaded.processor.tokenizer, POSITIVE, NEGATIVE)
    loader = pil_loader(workdir / "cache")
    flops = flops_per_image(loaded, examples, 4)
    common = dict(positive_answer=POSITIVE, negative_answer=NEGATIVE, image_loader=loader)
    bench = Bench(args, flops, {
        "arch": args.arch,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "workers": args.workers,
        "attention": loaded.model.config._attn_implementation,
        "gflops_per_image": round(flops / 1e9, 1),
        "image_processor": type(loaded.processor.image_processor).__name__,
        "dev_shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1),
        "model_build_s": round(build_s, 1),
    })
    results = bench.results

    # Warm-ups (kernel selection, allocator, worker start) are not timed.
    generate_answers(loaded, examples[:1], batch_size=1, workers=0, max_new_tokens=2, **common)
    score_logprob(loaded, examples[: batch_sizes[0]], batch_size=batch_sizes[0], workers=args.workers, **common)

    seed = examples[: args.seed_images]
    bench.record("seed_generate", len(seed), timed(lambda: generate_answers(
        loaded, seed, batch_size=1, workers=0, max_new_tokens=args.seed_new_tokens,
        min_new_tokens=args.seed_new_tokens, **common), device))
    if args.naive_images:
        naive = examples[: args.naive_images]
        bench.record(f"logprob_main_thread_b{batch_sizes[0]}", len(naive), timed(
            lambda: score_logprob(loaded, naive, batch_size=batch_sizes[0], workers=0, **common), device))
    scored_images = examples[: args.images]
    eager_scores, inputs_by_size = [], {}
    pipeline = pipeline_only(loaded, scored_images, batch_sizes[0], args.workers, loader)
    bench.record(f"pipeline_only_b{batch_sizes[0]}", len(scored_images), pipeline.pop("seconds"), **pipeline)
    eager_images = examples[: args.eager_images or args.images]
    for size in batch_sizes:
        clock = ProgressClock()
        seconds = timed(lambda size=size, clock=clock: eager_scores.append(
            [s.score for s in score_logprob(loaded, eager_images, batch_size=size, workers=args.workers,
                                            on_progress=clock, **common)]), device)
        bench.record(f"logprob_b{size}_eager", len(eager_images), seconds, options=ExecutionOptions().label(),
                     **clock.summary())
        repeats = max(2, args.model_only_images // size)
        inputs_by_size[size] = collated_batch(loaded, examples, size)
        bench.record(f"model_only_b{size}_eager", size * repeats,
                     timed(model_only_runner(loaded, inputs_by_size[size], repeats), device))

    size = batch_sizes[0]
    repeats = max(2, args.model_only_images // size)
    inputs = inputs_by_size[size]
    reference = batch_scores(loaded, inputs)
    eager_pass_s = results[f"model_only_b{size}_eager"]["seconds"] / repeats
    candidates = {ExecutionOptions(): results[f"model_only_b{size}_eager"]}
    end_to_end_estimate = 2 * len(scored_images) / results[f"logprob_b{size}_eager"]["images_per_s"] + 10
    kernels = filter(None, args.attention_variants.split(","))
    variants = [ExecutionOptions(vision_attention=kernel) for kernel in kernels]
    variants += [parse_compile_variant(text) for text in filter(None, args.compile_variants.split(","))]
    ran_end_to_end: dict = {}

    def end_to_end(final: bool) -> None:
        """`logprob` with the fastest options so far: right after the first compile variant (so the headline
        number exists even if later variants eat the budget), and at the end only if a later variant is >3%
        faster than those options were."""
        best = max(candidates, key=lambda options: candidates[options]["images_per_s"])
        results["best_model_only_options"] = best.label()
        if args.end_to_end_variant != "best":
            best = parse_compile_variant(args.end_to_end_variant)
        if best in ran_end_to_end or (final and ran_end_to_end and candidates.get(best, {}).get(
                "images_per_s", 0) < 1.03 * max(candidates[o]["images_per_s"] for o in ran_end_to_end)):
            return
        ran_end_to_end[best] = True
        _end_to_end(bench, loaded, scored_images, best, size, args, common, deadline, end_to_end_estimate,
                    eager_scores[0])

    profiled = False
    for options in variants:
        if options.compile != "none" and options.vision_attention == "auto":
            options = dataclasses.replace(options, vision_attention=_fastest_kernel(candidates))
        if options.compile != "none" and not profiled:
            profiled = _profile(bench, loaded, inputs, args, deadline, eager_pass_s, end_to_end_estimate)
        name = f"model_only_b{size}_{variant_name(options)}"
        estimate = (repeats + 2) * eager_pass_s + 5
        if options.compile != "none":
            # Autotuning benchmarks every matmul shape; the language model adds 34 more layers to trace.
            estimate += args.compile_estimate * (2 if "autotune" in options.compile_mode else 1)
            estimate += args.compile_estimate / 2 if "language" in options.compile else 0
        reserve = 0 if ran_end_to_end else end_to_end_estimate + args.compile_estimate / 2
        if not deadline.allows(estimate + reserve):
            bench.note(name, {"skipped": f"deadline: {deadline.left():.0f}s left, needs ~{estimate + reserve:.0f}s"})
            continue
        row = run_variant(bench, loaded, inputs, options, repeats, name, reference, candidates[ExecutionOptions()])
        if row:
            candidates[options] = row
        if options.compile != "none" and not ran_end_to_end:
            end_to_end(final=False)
    if not profiled:
        _profile(bench, loaded, inputs, args, deadline, eager_pass_s, end_to_end_estimate)
    end_to_end(final=True)
    eager_row = results[f"logprob_b{size}_eager"]
    end_to_end = [name for name in results if name.startswith("logprob_b") and "images_per_s" in results[name]]
    best_name = max(end_to_end, key=lambda name: results[name]["images_per_s"])
    results["best_logprob"] = best_name
    results["best_logprob_vs_seed"] = round(
        results[best_name]["images_per_s"] / results["seed_generate"]["images_per_s"], 1)
    results["best_logprob_vs_eager_logprob"] = round(results[best_name]["images_per_s"] / eager_row["images_per_s"], 3)
    return _finish(bench, results, args, deadline, device)


def _finish(bench, results: dict, args, deadline, device) -> int:
    """The closing fields every suite records (peak GPU memory, wall time), then the JSON file and its print."""
    import torch

    if device.type == "cuda":
        results["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    results["wall_s"] = round(args.deadline - deadline.left(), 1)
    bench.save()
    print(json.dumps(results, indent=2))
    return 0


def _compiled_frames() -> int:
    """Frames torch.compile has compiled in this process so far (a recompile counts one more)."""
    from torch._dynamo.utils import counters

    return counters["frames"]["ok"]


def _break_even(rate: float, compile_s: float, eager_rate: float) -> int | None:
    """Images after which the compile time is repaid at the model-only rates (None: never, not faster)."""
    saved_per_image = 1 / eager_rate - 1 / rate
    return round(compile_s / saved_per_image) if saved_per_image > 0 else None


def _fastest_kernel(candidates: dict) -> str:
    """The vision SDPA kernel of the eager rows if it beat PyTorch's own choice by more than 2%, else auto:
    compile variants then run with it, so the best kernel and the compiler are measured together."""
    eager = [options for options in candidates if options.compile == "none"]
    fastest = max(eager, key=lambda options: candidates[options]["images_per_s"])
    auto_rate = candidates[ExecutionOptions()]["images_per_s"]
    return fastest.vision_attention if candidates[fastest]["images_per_s"] > 1.02 * auto_rate else "auto"


def _profile(bench, loaded, inputs, args, deadline, eager_pass_s, end_to_end_estimate) -> bool:
    if not args.profile_batches:
        return True
    if not deadline.allows(args.profile_batches * eager_pass_s * 3 + 5 + end_to_end_estimate):
        bench.note("breakdown", {"skipped": "deadline"})
        return True
    try:
        breakdown = profile_breakdown(loaded, inputs, args.profile_batches)
    except Exception as error:  # noqa: BLE001 - a profiler problem must not cost the remaining rows
        bench.note("breakdown", {"error": " ".join(f"{type(error).__name__}: {error}".split())[:400]})
        return True
    breakdown["wall_ms_per_batch"] = round(eager_pass_s * 1000, 2)
    bench.note("breakdown", breakdown)
    print_breakdown(breakdown, inputs["input_ids"].shape[0])
    return True


def _end_to_end(bench, loaded, scored_images, best: ExecutionOptions, size, args, common, deadline,
                end_to_end_estimate, eager_scores: list[float]) -> None:
    """`logprob` over the same images with the fastest model-only options (nothing new if those are eager)."""
    import torch

    if best == ExecutionOptions():
        bench.note(f"logprob_b{size}_best", {"skipped": "the eager model was the fastest model-only variant"})
        return
    # The recompile after torch._dynamo.reset() reuses inductor's on-disk caches: about half a first compile.
    compile_estimate = args.compile_estimate / 2 if best.compile != "none" else 0
    name = f"logprob_b{size}_{variant_name(best)}"
    if not deadline.allows(end_to_end_estimate + compile_estimate):
        bench.note(name, {"skipped": f"deadline: {deadline.left():.0f}s left"})
        return
    if best.compile != "none":
        torch._dynamo.reset()
    applied = apply_execution(loaded.model, best, loaded.device)
    try:
        # The compile happens here, through the input pipeline itself: its batches are inference-mode tensors,
        # and a warm-up on the model-only batch (ordinary tensors, another dispatch key set) made the first
        # timed batch recompile (session 2's 33.8 images/s).
        warm_up = timed(lambda: score_logprob(loaded, scored_images[:size], batch_size=size, workers=args.workers,
                                              pad_to_batch=best.pads_batches, **common), loaded.device)
        frames_before = _compiled_frames()
        scored, clock = [], ProgressClock()
        seconds = timed(lambda: scored.extend(score_logprob(
            loaded, scored_images, batch_size=size, workers=args.workers, pad_to_batch=best.pads_batches,
            on_progress=clock, **common)), loaded.device)
        # The eager reference may cover only the first --eager-images images.
        compared = [s.score for s in scored][: len(eager_scores)]
        bench.record(name, len(scored_images), seconds, options=best.label(), **clock.summary(),
                     warm_up_s=round(warm_up, 1),
                     images_per_s_including_warm_up=round(len(scored_images) / (seconds + warm_up), 3),
                     graphs_compiled_while_timed=_compiled_frames() - frames_before,
                     compile_errors=applied.compile_errors() or None,
                     max_score_diff_vs_eager=max_difference(compared, eager_scores))
    except Exception as error:  # noqa: BLE001 - report it with the rest rather than lose the run's numbers
        bench.note(name, {"error": " ".join(f"{type(error).__name__}: {error}".split())[:400]})
    finally:
        applied.restore()


if __name__ == "__main__":
    sys.exit(main())
