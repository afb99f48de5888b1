"""Evaluator throughput: `logprob` scoring (batched, preprocessing in worker processes) against the seed's method
(one image at a time, `generate` forced to --seed-new-tokens tokens since random weights never stop), on the same
images in the same run, through the same code `mmft evaluate` runs (mmft_evaluator.scoring).

    python bench/eval_throughput.py --arch gemma3-4b --images 1024 --seed-images 5 --batch-sizes 64,128  # H200
    python bench/eval_throughput.py --arch tiny --images 64 --seed-images 4          # CPU smoke run

`gemma3-4b` is the Gemma-3-4B architecture with random weights (no hub access on the GPU machine): text hidden
2560, 34 layers, 8 heads / 4 KV heads, head_dim 256, intermediate 10240, vocab 262208, sliding window 1024 with
5 local : 1 global layers; SigLIP vision of 27 layers, hidden 1152, 896 px, patch 14, 256 tokens per image.
FLOPs per image are counted by torch's FlopCounterMode on one batch (matmuls and attention), and MFU is
images/s x FLOPs per image over the dense bf16 peak (--peak-tflops, H200 datasheet 989).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evaluator"))
sys.path.insert(0, str(REPO / "tests" / "ml"))

from mmft_evaluator.examples import read_examples  # noqa: E402
from mmft_evaluator.loading import LoadedModel, load_model, pick_device  # noqa: E402
from mmft_evaluator.model_spec import ModelSpec  # noqa: E402
from mmft_evaluator.scoring import (  # noqa: E402
    PromptCollator,
    answer_token_ids,
    generate_answers,
    pil_loader,
    score_logprob,
)

POSITIVE = "Yes, this appears to be malignant melanoma."
NEGATIVE = "No, this appears to be a benign lesion."


def gemma3_4b_random(device):
    import torch
    from tiny_gemma import CHAT_TEMPLATE, build_tokenizer
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor

    try:
        from transformers import Gemma3ImageProcessor as ImageProcessor

        ImageProcessor(size={"height": 896, "width": 896})
    except ImportError:  # the torchvision-backed processor needs torchvision; the PIL one does not
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    tokenizer = build_tokenizer()
    processor = Gemma3Processor(
        image_processor=ImageProcessor(size={"height": 896, "width": 896}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=256,
    )
    processor.tokenizer.padding_side = "left"
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("pad", "<pad>"),
            ("bos", "<bos>"),
            ("eos", "<eos>"),
            ("image", "<image_soft_token>"),
            ("boi", "<start_of_image>"),
            ("eoi", "<end_of_image>"),
        )
    }
    config = Gemma3Config(
        text_config=dict(
            vocab_size=262208,
            hidden_size=2560,
            intermediate_size=10240,
            num_hidden_layers=34,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            sliding_window=1024,
            query_pre_attn_scalar=256,
            max_position_embeddings=131072,
            layer_types=[("full_attention" if (i + 1) % 6 == 0 else "sliding_attention") for i in range(34)],
            pad_token_id=ids["pad"],
            bos_token_id=ids["bos"],
            eos_token_id=ids["eos"],
        ),
        vision_config=dict(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            image_size=896,
            patch_size=14,
        ),
        mm_tokens_per_image=256,
        image_token_index=ids["image"],
        boi_token_index=ids["boi"],
        eoi_token_index=ids["eoi"],
        pad_token_id=ids["pad"],
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    # Random weights never emit EOS on purpose; make sure generation cannot stop early either way.
    model.generation_config.eos_token_id = None
    return LoadedModel(model=model.eval(), processor=processor, device=device)


def tiny_random(device, workdir: Path):
    from tiny_gemma import build_tiny_gemma3

    model_dir = build_tiny_gemma3(workdir / "tiny-gemma3")
    loaded = load_model(ModelSpec(name="tiny", model=str(model_dir)), device, workdir / "cache")
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
                                "text": "You are a dermatology assistant that helps "
                                "identify potential melanoma from skin lesion images.",
                            }
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "path": str(path)},
                            {"type": "text", "text": "Does this appear to be malignant melanoma?"},
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

    collator = PromptCollator(loaded.processor, pil_loader(Path(tempfile.gettempdir())))
    _, inputs = collator(examples[:batch])
    dtype = next(loaded.model.parameters()).dtype
    inputs = {
        k: (v.to(loaded.device).to(dtype) if v.is_floating_point() else v.to(loaded.device)) for k, v in inputs.items()
    }
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        loaded.model(**inputs, logits_to_keep=1)
    return counter.get_total_flops() / batch


def gpu_only_runner(loaded, examples, batch: int, repeats: int):
    """Forward passes over one already collated batch: the model's ceiling without the data pipeline."""
    import torch

    dtype = next(loaded.model.parameters()).dtype
    _, inputs = PromptCollator(loaded.processor, pil_loader(Path(tempfile.gettempdir())), dtype)(examples[:batch])
    inputs = {key: value.to(loaded.device) for key, value in inputs.items()}

    def run():
        with torch.inference_mode():
            for _ in range(repeats):
                loaded.model(**inputs, logits_to_keep=1)

    return run


def timed(run, device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("gemma3-4b", "tiny"), default="gemma3-4b")
    parser.add_argument("--images", type=int, default=1024, help="images scored by the logprob runs")
    parser.add_argument("--seed-images", type=int, default=5, help="images of the seed's one-at-a-time method")
    parser.add_argument("--seed-new-tokens", type=int, default=100)
    parser.add_argument("--batch-sizes", default="64", help="comma-separated logprob batch sizes, each timed")
    parser.add_argument("--workers", type=int, default=max(1, min(15, len(os.sched_getaffinity(0)) - 1)))
    parser.add_argument(
        "--naive-images",
        type=int,
        default=256,
        help="images of the batched logprob run with preprocessing on the main thread (0: skip)",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H200: 989)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    device = pick_device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="mmft-eval-bench-"))
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    jsonl = write_images(workdir, max(args.images, args.seed_images, args.naive_images, *batch_sizes))
    examples = read_examples(jsonl, POSITIVE, NEGATIVE)
    loaded = gemma3_4b_random(device) if args.arch == "gemma3-4b" else tiny_random(device, workdir)
    answer_token_ids(loaded.processor.tokenizer, POSITIVE, NEGATIVE)
    loader = pil_loader(workdir / "cache")
    flops = flops_per_image(loaded, examples, 4)
    common = dict(positive_answer=POSITIVE, negative_answer=NEGATIVE, image_loader=loader)
    results = {
        "arch": args.arch,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "workers": args.workers,
        "attention": loaded.model.config._attn_implementation,
        "gflops_per_image": round(flops / 1e9, 1),
        "image_processor": type(loaded.processor.image_processor).__name__,
        "dev_shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1),
    }

    # Warm-ups (kernel selection, allocator, worker start) are not timed.
    generate_answers(loaded, examples[:1], batch_size=1, workers=0, max_new_tokens=2, **common)
    score_logprob(loaded, examples[: batch_sizes[0]], batch_size=batch_sizes[0], workers=args.workers, **common)

    def record(name, count, seconds):
        rate = count / seconds
        results[name] = {"images": count, "seconds": round(seconds, 2), "images_per_s": round(rate, 3)}
        if name != "seed_generate":
            results[name]["mfu"] = round(rate * flops / (args.peak_tflops * 1e12), 4)
        print(json.dumps({name: results[name]}), flush=True)

    seed = examples[: args.seed_images]
    record(
        "seed_generate",
        len(seed),
        timed(
            lambda: generate_answers(
                loaded,
                seed,
                batch_size=1,
                workers=0,
                max_new_tokens=args.seed_new_tokens,
                min_new_tokens=args.seed_new_tokens,
                **common,
            ),
            device,
        ),
    )
    if args.naive_images:
        naive = examples[: args.naive_images]
        record(
            f"logprob_main_thread_b{batch_sizes[0]}",
            len(naive),
            timed(lambda: score_logprob(loaded, naive, batch_size=batch_sizes[0], workers=0, **common), device),
        )
    batch = examples[: args.images]
    for size in batch_sizes:
        record(
            f"logprob_b{size}",
            len(batch),
            timed(
                lambda size=size: score_logprob(loaded, batch, batch_size=size, workers=args.workers, **common), device
            ),
        )
        repeats = max(2, args.images // (4 * size))
        record(f"model_only_b{size}", size * repeats, timed(gpu_only_runner(loaded, examples, size, repeats), device))
    best = max((name for name in results if name.startswith("logprob_b")), key=lambda n: results[n]["images_per_s"])
    results["best_logprob"] = best
    results["logprob_vs_seed"] = round(results[best]["images_per_s"] / results["seed_generate"]["images_per_s"], 1)
    if device.type == "cuda":
        results["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
