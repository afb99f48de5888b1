"""The evaluator's input pipeline alone (no model, CPU): how soon the first GPU batch is ready and how many
images/s reach the GPU, when each worker prepares a whole GPU batch (before) or a slice of it
(mmft_evaluator.scoring.worker_slice_size), and with the slices' pixel normalisation left to the GPU
(`defer_normalization`, what `mmft evaluate` does with a torchvision-backed processor), on the same images in the
same run.

    python bench/eval_preprocess.py --images 256 --batch-size 64 --workers 2

Images are 512 px JPEGs (dataprep's default output) processed by Gemma 3's processor at 896 px with 256 image
tokens, as for Gemma-3-4B; the time is until every batch has been received (pinned memory off: no GPU here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "evaluator"))
sys.path.insert(0, str(REPO / "storage"))
sys.path.insert(0, str(REPO / "tests" / "ml"))
sys.path.insert(0, str(REPO / "bench"))

from eval_throughput import NEGATIVE, POSITIVE, write_images  # noqa: E402
from mmft_evaluator.examples import read_examples  # noqa: E402
from mmft_evaluator.scoring import PromptCollator, pil_loader, worker_slice_size  # noqa: E402


def gemma3_4b_processor():
    from tiny_gemma import CHAT_TEMPLATE, build_tokenizer
    from transformers import Gemma3Processor

    try:
        import torchvision  # noqa: F401 - the default image processor's backend
        from transformers import Gemma3ImageProcessor as ImageProcessor
    except ImportError:
        from transformers import Gemma3ImageProcessorPil as ImageProcessor
    processor = Gemma3Processor(
        image_processor=ImageProcessor(size={"height": 896, "width": 896}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=build_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=256,
    )
    processor.tokenizer.padding_side = "left"
    return processor


def run_loader(examples, collator, slice_size: int, batch_size: int, workers: int) -> dict:
    from torch.utils.data import DataLoader

    started = time.perf_counter()
    first_batch = None
    received = 0
    loader = DataLoader(
        examples,
        batch_size=slice_size,
        collate_fn=collator,
        num_workers=workers,
        prefetch_factor=4,
        worker_init_fn=lambda _: __import__("torch").set_num_threads(1),
    )
    for chunk, _ in loader:
        received += len(chunk)
        if first_batch is None and received >= batch_size:
            first_batch = time.perf_counter() - started
    total = time.perf_counter() - started
    return {
        "slice": slice_size,
        "first_batch_s": round(first_batch, 2),
        "seconds": round(total, 2),
        "images_per_s": round(len(examples) / total, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=max(2, len(os.sched_getaffinity(0))))
    args = parser.parse_args()

    import torch

    workdir = Path(tempfile.mkdtemp(prefix="mmft-eval-preprocess-"))
    examples = read_examples(write_images(workdir, args.images), POSITIVE, NEGATIVE)
    processor = gemma3_4b_processor()
    collator = PromptCollator(processor, pil_loader(workdir / "cache"), torch.bfloat16)
    results = {
        "workers": args.workers,
        "batch_size": args.batch_size,
        "images": args.images,
        "image_processor": type(processor.image_processor).__name__,
    }
    results["whole_batch_per_worker"] = run_loader(examples, collator, args.batch_size, args.batch_size, args.workers)
    sliced = worker_slice_size(args.batch_size, args.workers)
    results["slices"] = run_loader(examples, collator, sliced, args.batch_size, args.workers)
    results["first_batch_speedup"] = round(
        results["whole_batch_per_worker"]["first_batch_s"] / results["slices"]["first_batch_s"], 2
    )
    deferred = PromptCollator(processor, pil_loader(workdir / "cache"), torch.bfloat16, defer_normalization=True)
    results["slices_normalized_on_device"] = run_loader(examples, deferred, sliced, args.batch_size, args.workers)
    results["normalization_deferral_speedup"] = round(
        results["slices_normalized_on_device"]["images_per_s"] / results["slices"]["images_per_s"], 2
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
