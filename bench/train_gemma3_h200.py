"""Trainer benchmark: the seed's exact settings vs mmft's accelerator defaults, same data, one run, real `mmft train`.

Model: Gemma-3-4B architecture with random weights (built here, no hub), tokenizer/processor as the tiny test model's
recipe at Gemma 3's real 896 px and 256 tokens per image. Data: synthetic 1024x1024 JPEG "lesions" in the seed's
chat_template format. Every variant runs as a subprocess of `python -m mmft_trainer train` with a timing plugin
(bench/train_timing_plugin.py) that records optimizer-step end times and peak GPU memory.

Reports per variant: steady-state samples/s (first --warmup-steps steps excluded), seconds per optimizer step,
peak GPU memory, and MFU = samples/s x model FLOPs per sample / peak dense bf16 FLOP/s (FLOPs counted in
`flops_per_sample`). Ratios are against the seed variant measured in the same run.

    python bench/train_gemma3_h200.py --out /tmp/bench          # on the GPU machine
    python bench/train_gemma3_h200.py --smoke --out /tmp/smoke  # CPU: tiny model, checks the pipeline only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ml"))

import gemma3_4b  # noqa: E402
from tiny_gemma import ANSWERS, QUESTION, SYSTEM_PROMPT  # noqa: E402

# Dense bf16 peak of the H100/H200 SXM datasheet (without sparsity). KINDS.md measured ~790 TFLOP/s for a large
# bf16 matmul on this machine; MFU is reported against the datasheet number, as is customary.
PEAK_BF16_FLOPS = 989e12

GEMMA3_4B_TEXT, GEMMA3_4B_VISION, TOKENS_PER_IMAGE = gemma3_4b.TEXT, gemma3_4b.VISION, gemma3_4b.TOKENS_PER_IMAGE

# The seed article's gemma3-melanoma.yaml, verbatim except for paths and where noted in `seed_config`.
SEED = {
    "model_type": "AutoModelForCausalLM",
    "tokenizer_type": "GemmaTokenizer",
    "processor_type": "AutoProcessor",
    "chat_template": "gemma3",
    "hf_use_auth_token": True,
    "load_in_4bit": True,
    "adapter": "qlora",
    "lora_r": 32,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": r"language_model.model.layers.[\d]+.(mlp|cross_attn|self_attn).(up|down|gate|q|k|v|o)_proj",
    "lora_mlp_kernel": True,
    "lora_qkv_kernel": True,
    "lora_o_kernel": True,
    "sequence_len": 4096,
    "optimizer": "adamw_torch_fused",
    "lr_scheduler": "cosine",
    "learning_rate": 2e-5,
    "weight_decay": 0.01,
    "max_steps": 1000,
    "warmup_steps": 100,
    "gradient_checkpointing": True,
    "gradient_accumulation_steps": 4,
    "micro_batch_size": 1,
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "flash_attention": True,
    "skip_prepare_dataset": True,
    "remove_unused_columns": False,
    "sample_packing": False,
    "image_size": 512,
    "image_resize_algorithm": "bilinear",
    "use_tensorboard": True,
    "logging_steps": 10,
}
# The seed's regex matches no module in current transformers (preflight rejects it); same intent, current names.
FIXED_TARGET_MODULES = r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"


def build_model(model_dir: Path, smoke: bool) -> None:
    if (model_dir / "config.json").exists():
        return
    if smoke:
        from tiny_gemma import build_tiny_gemma3

        build_tiny_gemma3(model_dir)
        return
    import torch
    from tiny_gemma import build_processor
    from transformers import Gemma3ForConditionalGeneration

    processor = build_processor(image_size=GEMMA3_4B_VISION["image_size"], tokens_per_image=TOKENS_PER_IMAGE)
    config = gemma3_4b.config(processor.tokenizer)
    torch.manual_seed(0)
    started = time.monotonic()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Gemma3ForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"built random Gemma-3-4B ({params / 1e9:.2f} B parameters) in {time.monotonic() - started:.0f} s", flush=True
    )
    del model
    torch.cuda.empty_cache()


def _lesion(args: tuple[int, int, str]) -> str:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    index, size, path = args
    rng = np.random.default_rng(index)
    skin = rng.integers(170, 235, 3)
    noise = rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(skin + noise, 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        radius = int(rng.integers(size // 10, size // 4))
        cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        colour = tuple(int(v) for v in rng.integers(40, 140, 3))
        draw.ellipse((cx - radius, cy - int(radius * 0.8), cx + radius, cy + int(radius * 1.1)), fill=colour)
    image.filter(ImageFilter.GaussianBlur(3)).save(path, quality=92)
    return path


def build_data(data_dir: Path, rows: int, image_px: int) -> Path:
    jsonl = data_dir / "train.jsonl"
    if jsonl.exists():
        return jsonl
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(index, image_px, str(data_dir / "images" / f"ISIC_{index:07d}.jpg")) for index in range(rows)]
    with Pool(min(16, os.cpu_count() or 1)) as pool:
        paths = pool.map(_lesion, jobs, chunksize=8)
    with open(jsonl, "w") as handle:
        for index, path in enumerate(paths):
            handle.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
                            {
                                "role": "user",
                                "content": [{"type": "image", "path": path}, {"type": "text", "text": QUESTION}],
                            },
                            {"role": "assistant", "content": [{"type": "text", "text": ANSWERS[index % 2]}]},
                        ]
                    }
                )
                + "\n"
            )
    return jsonl


def seed_config(model_dir: Path, data: Path, out: Path, steps: int, smoke: bool) -> dict:
    config = dict(
        SEED,
        base_model=str(model_dir),
        output_dir=str(out),
        max_steps=steps,
        datasets=[
            {
                "path": str(data),
                "type": "chat_template",
                "ds_type": "json",
                "field_messages": "messages",
                "chat_template": "gemma3",
            }
        ],
    )
    config["lora_target_modules"] = FIXED_TARGET_MODULES
    # flash_attention in Axolotl 0.19 loads its kernel from a model hub, unreachable here (and in many clusters):
    # the seed variant falls back to Axolotl's default attention.
    config["flash_attention"] = False
    # No checkpoint inside the measured window (mmft turns save_strategy epoch into steps).
    config.update(save_strategy="steps", save_steps=steps + 1)
    return _smoke(config) if smoke else config


# Every variant but the seed is a FineTuneJob on this card, rendered by the operator's own renderer.
BENCH_ACCELERATOR = "nvidia-h200-141gb"


def bench_spec(data: Path, steps: int, accelerator: str = BENCH_ACCELERATOR, **training):
    """A FineTuneJob spec on ``accelerator``: ``training`` is its spec.training (camelCase, as a user writes it); no
    checkpoint inside the measured window."""
    from mmft_operator.api.finetunejob import FineTuneJobSpec

    return FineTuneJobSpec.model_validate({
        "baseModel": "google/gemma-3-4b-it",
        "dataset": {"trainPath": str(data)},
        "bucket": {"name": "bench-bucket"},
        "compute": {"accelerator": accelerator},
        "training": {"maxSteps": steps, "warmupSteps": 1, "saveSteps": steps + 1, "loggingSteps": 1, **training},
    })


def _smoke(config: dict) -> dict:
    config.update(
        bf16=False,
        fp16=False,
        tf32=False,
        lora_mlp_kernel=False,
        lora_qkv_kernel=False,
        lora_o_kernel=False,
        image_size=32,
        sequence_len=256,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )
    config.pop("dataloader_prefetch_factor", None)
    config.pop("torch_compile", None)
    # Liger's kernels are Triton: GPU only.
    config["plugins"] = [p for p in config.get("plugins") or [] if "liger" not in p.lower()]
    for key in [k for k in config if k.startswith("liger_")]:
        config.pop(key)
    config.pop("attn_implementation", None)
    config.pop("flash_attention", None)
    if config.get("adapter") == "qlora":
        config["micro_batch_size"] = 1
    return config


def flops_per_sample(
    text_tokens: float, lora_r: int, text: dict = GEMMA3_4B_TEXT, vision: dict = GEMMA3_4B_VISION
) -> dict:
    """Model FLOPs of one training sample (2 FLOPs per multiply-add; recomputation not counted).

    Text (frozen base + LoRA): forward 2*N per token over the linear layers and the tied LM head, backward the same
    again for activation gradients only (frozen weights need no weight gradients), causal attention scores, and
    LoRA's own forward + both backward products. Vision tower and projector (frozen, no gradient flows into them):
    forward only, over 4096 patches, with full bidirectional attention.
    """
    h, layers = text["hidden_size"], text["num_hidden_layers"]
    q_out = text["num_attention_heads"] * text["head_dim"]
    kv_out = text["num_key_value_heads"] * text["head_dim"]
    ffn = text["intermediate_size"]
    projections = [(h, q_out), (h, kv_out), (h, kv_out), (q_out, h), (h, ffn), (h, ffn), (ffn, h)]
    linear = layers * sum(i * o for i, o in projections) + h * text["vocab_size"]
    lora = layers * sum(lora_r * (i + o) for i, o in projections)
    causal_context = (text_tokens + 1) / 2
    attention = layers * 2 * 2 * q_out * causal_context
    text_flops = text_tokens * (2 * 2 * linear + 3 * attention + 6 * lora)

    vh, vlayers, vffn = vision["hidden_size"], vision["num_hidden_layers"], vision["intermediate_size"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    vision_linear = vlayers * (4 * vh * vh + 2 * vh * vffn)
    patch_embed = 3 * vision["patch_size"] ** 2 * vh
    vision_attention = vlayers * 2 * 2 * vh * patches * patches
    vision_flops = 2 * patches * (vision_linear + patch_embed) + vision_attention + 2 * TOKENS_PER_IMAGE * vh * h
    # The convention (its 12% at 9-10 samples/s): text counted as if every weight were trained (6N per token:
    # forward 2N, backward 4N), vision forward only. Reported beside the frozen-base count, which is what runs.
    text_as_trained = text_tokens * (3 * 2 * linear + 3 * attention + 6 * lora)
    return {
        "text": text_flops,
        "vision": vision_flops,
        "total": text_flops + vision_flops,
        "total_6n": text_as_trained + vision_flops,
    }


def text_tokens_per_sample(model_dir: Path, data: Path, samples: int = 16) -> float:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    lengths = []
    with open(data) as handle:
        for _, line in zip(range(samples), handle, strict=False):
            messages = json.loads(line)["messages"]
            text = processor.apply_chat_template(messages, tokenize=False)
            image = Image.open(messages[1]["content"][0]["path"]).convert("RGB")
            lengths.append(processor(text=text, images=[image], return_tensors="pt")["input_ids"].shape[1])
    return statistics.mean(lengths)


# Not an Axolotl key: run_variant turns it into BENCH_FULL_HEAD for the timing plugin.
FULL_HEAD_KEY = "bench_full_head"


def run_variant(name: str, config: dict, work: Path, timeout: int, profile: bool = False) -> dict:
    run_dir = work / name
    # The run directory is the variant's output_dir: a completion marker or timing.json left by an earlier run under
    # the same --work (a second call on a machine still warm) would make `mmft train` skip training and the old
    # timing be reported as this run's.
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    full_head = config.pop(FULL_HEAD_KEY, False)
    config = dict(config, plugins=list(config.get("plugins") or []) + ["train_timing_plugin.TimingPlugin"])
    config_path = run_dir / "axolotl.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    timing = run_dir / "timing.json"
    env = dict(
        os.environ,
        BENCH_TIMING_FILE=str(timing),
        MMFT_REPORT_FILE=str(run_dir / "report.json"),
        PYTHONPATH=os.pathsep.join([str(REPO / "bench"), os.environ.get("PYTHONPATH", "")]),
    )
    if full_head:
        env["BENCH_FULL_HEAD"] = "1"
    if profile:  # the last two optimizer steps, left out of the speed figures
        env["BENCH_PROFILE_STEPS"] = f"{config['max_steps'] - 1}:{config['max_steps']}"
    started = time.monotonic()
    with open(run_dir / "log.txt", "w") as log:
        try:
            process = subprocess.run(
                # The seed runs as the article ran it: plain Axolotl, none of mmft's trainer changes.
                [sys.executable, "-m", "axolotl.cli.train", str(config_path)]
                if name == "seed"
                else [sys.executable, "-m", "mmft_trainer", "train", str(config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
            returncode = process.returncode
        except subprocess.TimeoutExpired:
            returncode = "timeout"
    result = {
        "name": name,
        "returncode": returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
        "micro_batch_size": config["micro_batch_size"],
        "gradient_accumulation_steps": config["gradient_accumulation_steps"],
        "gradient_checkpointing": config["gradient_checkpointing"],
        "adapter": config["adapter"],
    }
    if timing.exists():
        result["timing"] = json.loads(timing.read_text())
    else:
        result["log_tail"] = (run_dir / "log.txt").read_text()[-3000:]
    print(f"{name}: exit {returncode} after {result['wall_seconds']} s", flush=True)
    return result


def summarise(result: dict, warmup_steps: int, sample_flops: dict) -> dict:
    timing = result.get("timing")
    if not timing or len(timing["step_ends"]) <= warmup_steps + 2:
        return {}
    ends = timing["step_ends"]
    if timing.get("profiled_steps"):
        ends = ends[: timing["profiled_steps"][0]]  # profiled steps run slower: measure only the ones before
    ends = ends[warmup_steps:]
    durations = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    samples_per_second = timing["samples_per_step"] * len(durations) / (ends[-1] - ends[0])
    return {
        "measured_steps": len(durations),
        "samples_per_second": samples_per_second,
        "seconds_per_step": statistics.median(durations),
        "peak_allocated_gib": timing["peak_allocated_bytes"] / 2**30,
        "peak_reserved_gib": timing["peak_reserved_bytes"] / 2**30,
        "device_gib": timing["device_total_bytes"] / 2**30,
        "mfu": samples_per_second * sample_flops["total"] / PEAK_BF16_FLOPS,
        "mfu_6n": samples_per_second * sample_flops["total_6n"] / PEAK_BF16_FLOPS,
        "losses": timing.get("losses", {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmft-bench"))
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU: checks the pipeline, not speed")
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="seed,mmft-b4,mmft-defaults",
        help="comma-separated: seed, mmft-defaults (what the operator renders for an H200), "
        "rendered-{lora,qlora}-bN[-ckpt][-noliger] (the operator's rendering with that adapter, micro batch and "
        "checkpointing), or mmft-bN followed by any of -compile -liger -ligerall -nodrop -fullhead -wN (workers)",
    )
    parser.add_argument("--ladder-steps", type=int, default=8, help="optimizer steps of each rendered-* variant")
    parser.add_argument("--timeout", type=int, default=240, help="seconds per variant")
    parser.add_argument("--profile", default="", help="comma-separated variants to profile over their last 2 steps")
    parser.add_argument("--deadline", type=int, default=10**6, help="seconds for the whole benchmark")
    args = parser.parse_args()
    started = time.monotonic()
    os.environ.update(
        AXOLOTL_DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir, work = args.work / "gemma3-4b-random", args.work / "runs"
    build_model(model_dir, args.smoke)
    data = build_data(args.work / "data", 32 if args.smoke else args.rows, 48 if args.smoke else 1024)

    def variant(name: str) -> dict:
        return variant_config(name, model_dir, data, work / name, args.smoke, args.ladder_steps)

    tokens = text_tokens_per_sample(model_dir, data)
    sample_flops = flops_per_sample(tokens, lora_r=SEED["lora_r"])
    results = []
    for name in args.variants.split(","):
        remaining = args.deadline - (time.monotonic() - started) - 15
        if remaining < 60:
            print(f"{name}: skipped, {remaining:.0f} s left of the deadline", flush=True)
            continue
        profile = name in args.profile.split(",")
        result = run_variant(name, variant(name), work, int(min(args.timeout, remaining)), profile)
        (args.out / f"{name}.log").write_text((work / name / "log.txt").read_text()[-2_000_000:])
        breakdown = work / name / "timing.json.profile.txt"
        if breakdown.exists():
            print(f"\n{name}: {breakdown.read_text()}", flush=True)
            (args.out / f"{name}.profile.txt").write_text(breakdown.read_text())
        result["summary"] = summarise(result, 1 if args.smoke else args.warmup_steps, sample_flops)
        results.append(result)
        (args.out / "bench-trainer.json").write_text(
            json.dumps(
                {"text_tokens_per_sample": tokens, "flops_per_sample": sample_flops, "results": results}, indent=1
            )
        )
    print_table(results, tokens, sample_flops)
    return 0 if all(result["summary"] for result in results) else 1


def variant_spec(name: str, data: Path, steps: int):
    """The FineTuneJob spec of every variant but the seed, and whether it runs the full LM head."""
    if name == "mmft-defaults":
        # Exactly what the operator renders for an H200 (operator/mmft_operator/training_defaults.py).
        return bench_spec(data, steps), False
    if name.startswith("rendered-"):
        return bench_spec(data, steps, **rendered_options(name)), False
    training, full_head = variant_options(name)
    return bench_spec(data, steps, **training), full_head


def variant_steps(name: str, smoke: bool, ladder_steps: int) -> int:
    if smoke:
        return 4
    if name == "seed":
        return 12
    if name == "mmft-defaults":
        return 14
    if name.startswith("rendered-"):
        return ladder_steps
    return max(12, min(24, 384 // variant_options(name)[0]["microBatchSize"]))


def variant_config(name: str, model_dir: Path, data: Path, out: Path, smoke: bool, ladder_steps: int) -> dict:
    """The Axolotl config of a variant: the seed's own, or the operator's rendering of the variant's FineTuneJob with
    this run's paths (and, with --smoke, the CPU changes of `_smoke`)."""
    steps = variant_steps(name, smoke, ladder_steps)
    if name == "seed":
        return seed_config(model_dir, data, out, steps, smoke)
    from mmft_operator.builders.axolotl_config import DatasetPaths, build_axolotl_config

    spec, full_head = variant_spec(name, data, steps)
    config = build_axolotl_config(spec, DatasetPaths(str(data)))
    config.update(base_model=str(model_dir), output_dir=str(out))
    if full_head:
        config[FULL_HEAD_KEY] = True
    return _smoke(config) if smoke else config


def rendered_options(name: str) -> dict:
    """spec.training of a variant named like rendered-qlora-b16[-ckpt][-noliger] (see --variants)."""
    parts = name.split("-")
    if len(parts) < 3 or parts[1] not in ("lora", "qlora") or not parts[2].startswith("b"):
        raise SystemExit(f"unknown variant {name!r}")
    training = {"adapter": parts[1], "microBatchSize": int(parts[2][1:]), "gradientCheckpointing": "ckpt" in parts,
                "gradientAccumulationSteps": 1}
    if parts[1] == "qlora":
        training["loadIn4bit"] = True
    if "noliger" in parts:  # overriding plugins is how a user turns Liger off
        training["overrides"] = {"plugins": []}
    unknown = set(parts[3:]) - {"ckpt", "noliger"}
    if unknown:
        raise SystemExit(f"unknown variant parts {sorted(unknown)} in {name!r}")
    return training


# Axolotl options of the mmft-* variants that spec.training has no typed field for: each is set through
# spec.training.overrides, the API's own way to reach Axolotl's long tail, so the variant stays a FineTuneJob a user
# can write. Compile and Liger are decided per card by the operator; these variants switch them explicitly.
NO_COMPILE_NO_LIGER = {"torch_compile": False, "plugins": []}
LIGER = {
    "plugins": ["axolotl.integrations.liger.LigerPlugin"],
    "liger_rms_norm": True,
    "liger_rope": True,
    "liger_fused_linear_cross_entropy": True,
}
# Not rendered by the operator for any card: Liger's GeGLU and SigLIP LayerNorm (the -ligerall variants).
LIGER_ALL = {**LIGER, "liger_glu_activation": True, "liger_layer_norm": True}


def variant_options(name: str) -> tuple[dict, bool]:
    """spec.training of a variant named like mmft-b32-compile-liger-nodrop-w12 (see --variants), and whether it
    runs the LM head over every position (-fullhead: the timing plugin undoes mmft's labelled-rows trim)."""
    parts = name.split("-")
    if parts[0] != "mmft" or not parts[1].startswith("b"):
        raise SystemExit(f"unknown variant {name!r}")
    overrides = dict(NO_COMPILE_NO_LIGER)
    training = {"adapter": "lora", "loadIn4bit": False, "gradientCheckpointing": False,
                "gradientAccumulationSteps": 1, "microBatchSize": int(parts[1][1:]), "overrides": overrides}
    full_head = False
    for part in parts[2:]:
        if part == "compile":
            overrides["torch_compile"] = True
        elif part == "liger":
            overrides.update(LIGER)
        elif part == "ligerall":
            overrides.update(LIGER_ALL)
        elif part == "nodrop":
            training["lora"] = {"dropout": 0.0}
        elif part == "fullhead":
            full_head = True
        elif part.startswith("w"):
            overrides["dataloader_num_workers"] = int(part[1:])
        else:
            raise SystemExit(f"unknown variant part {part!r} in {name!r}")
    return training, full_head


def print_table(results: list[dict], tokens: float, sample_flops: dict) -> None:
    print(
        f"\ntext tokens/sample {tokens:.0f}; model TFLOPs/sample {sample_flops['total'] / 1e12:.2f} "
        f"(text {sample_flops['text'] / 1e12:.2f}, vision {sample_flops['vision'] / 1e12:.2f}); "
        f"issue's 6N convention {sample_flops['total_6n'] / 1e12:.2f}"
    )
    seed = next((r["summary"] for r in results if r["name"] == "seed" and r["summary"]), None)
    print(
        f"{'variant':28} {'adapter':7} {'mbs':>4} {'GA':>3} {'ckpt':>5} {'samples/s':>10} {'x seed':>7} "
        f"{'s/step':>7} {'peak GiB':>9} {'MFU':>6} {'MFU 6N':>7}  losses by step"
    )
    for result in results:
        s = result["summary"]
        if not s:
            print(f"{result['name']:28} FAILED (exit {result['returncode']})")
            continue
        ratio = s["samples_per_second"] / seed["samples_per_second"] if seed else float("nan")
        print(
            f"{result['name']:28} {result['adapter']:7} {result['micro_batch_size']:>4} "
            f"{result['gradient_accumulation_steps']:>3} {str(result['gradient_checkpointing']):>5} "
            f"{s['samples_per_second']:>10.2f} {ratio:>7.1f} {s['seconds_per_step']:>7.2f} "
            f"{s['peak_allocated_gib']:>9.1f} {s['mfu'] * 100:>5.1f}% {s['mfu_6n'] * 100:>6.1f}%  "
            + " ".join(f"{step}:{loss:.4f}" for step, loss in sorted(s["losses"].items(), key=lambda kv: int(kv[0])))
        )


if __name__ == "__main__":
    sys.exit(main())
