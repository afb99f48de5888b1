"""SigLIP's attention at Gemma 3's shape (batch x 16 heads x 4096 patches), timed per SDPA kernel and head_dim.

Gemma 3's vision tower has head_dim 72, which no attention kernel tiles natively. This script times the same
attention at head_dim 64, 72, 80, 96 and 128 with each SDPA backend and prints, per row, the milliseconds of one
layer's attention and two rates: `tflops_at_d` counts the work at that head_dim, `tflops_as_72` counts the work
the 72-dim model needs (the same for every row). If a kernel pads 72 up to 128, its time at 72 equals its time
at 128 and its `tflops_as_72` is 72/128 of its rate at 128.

    python bench/vision_attention.py --batch 64 --json-out $OUT/vision_attention.json     # H200
    python bench/vision_attention.py --batch 1 --tokens 256 --repeats 2                   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BACKENDS = ("cudnn", "flash", "efficient", "math")


def attention_flops(batch: int, heads: int, tokens: int, head_dim: int) -> float:
    """Q·K^T and P·V: two matmuls of tokens x tokens x head_dim per head, 2 FLOPs per multiply-add."""
    return 4.0 * batch * heads * tokens * tokens * head_dim


def time_backend(backend: str, q, k, v, repeats: int) -> float:
    """Median seconds of one attention call (CUDA events on the GPU, the host clock on the CPU)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    choice = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
              "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]
    functional = torch.nn.functional
    samples = []
    with sdpa_kernel([choice]), torch.inference_mode():
        functional.scaled_dot_product_attention(q, k, v)  # warm-up: kernel selection, workspace
        for _ in range(repeats):
            if q.is_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                functional.scaled_dot_product_attention(q, k, v)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end) / 1000)
            else:
                started = time.perf_counter()
                functional.scaled_dot_product_attention(q, k, v)
                samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--head-dims", default="64,72,80,96,128")
    parser.add_argument("--backends", default="cudnn,flash,efficient")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model_flops = attention_flops(args.batch, args.heads, args.tokens, 72)
    rows = []
    for head_dim in (int(d) for d in args.head_dims.split(",")):
        shape = (args.batch, args.heads, args.tokens, head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
        for backend in args.backends.split(","):
            row = {"backend": backend, "head_dim": head_dim}
            try:
                seconds = time_backend(backend, q, k, v, args.repeats)
                row.update(ms=round(seconds * 1000, 2),
                           tflops_at_d=round(attention_flops(args.batch, args.heads, args.tokens, head_dim)
                                             / seconds / 1e12, 1),
                           tflops_as_72=round(model_flops / seconds / 1e12, 1))
            except RuntimeError as error:  # a backend that does not take this head_dim
                row["error"] = " ".join(str(error).split())[:160]
            rows.append(row)
            print(json.dumps(row), flush=True)
        del q, k, v
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "batch": args.batch, "heads": args.heads, "tokens": args.tokens,
              "rows": rows}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
