"""Training defaults: every accelerator x adapter x model size renders a config that stays under 85% of the card by
the memory model measured on the H200; the table is pinned in a golden file; the user's values always win.

Regenerate the table after an intended change with: MMFT_UPDATE_GOLDEN=1 pytest tests/unit/test_trainer_defaults.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from mmft_operator.accelerators import PROFILES
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.builders.axolotl_config import DatasetPaths, build_axolotl_config
from mmft_operator.training_defaults import (
    GEMMA3_4B,
    LIGER_PLUGIN,
    MEASURED,
    MEMORY_HEADROOM,
    MODEL_SHAPES,
    SEED_EFFECTIVE_BATCH,
    model_shape,
    plan,
    predicted_peak_gib,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "training-defaults.txt"
ADAPTERS = (None, "lora", "qlora")


def _spec(accelerator: str, size: str, **training) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({
        "baseModel": "google/gemma-3-4b-it",
        "baseModelSize": size,
        "dataset": {"trainPath": "/mnt/gcs/d/train.jsonl"},
        "bucket": {"name": "my-bucket"},
        "compute": {"accelerator": accelerator},
        "training": {"maxSteps": 100, **training},
    })


def _rendered_peak(config: dict, size: str) -> float:
    """The memory model applied to what the renderer wrote (not to the plan it started from)."""
    return predicted_peak_gib(
        MODEL_SHAPES[size],
        config["adapter"],
        config["micro_batch_size"],
        config["gradient_checkpointing"],
        liger=LIGER_PLUGIN in (config.get("plugins") or []),
        lora_rank=config["lora_r"],
    )


def _table() -> str:
    lines = ["accelerator            size adapter-set  adapter mbs ga ckpt liger compile  peak/budget GiB  fits"]
    for accelerator, card in PROFILES.items():
        for size in MODEL_SHAPES:
            for adapter in ADAPTERS:
                training = {"adapter": adapter, "loadIn4bit": True} if adapter == "qlora" else {"adapter": adapter}
                config = build_axolotl_config(_spec(accelerator, size, **training), DatasetPaths("/d/train.jsonl"))
                peak = _rendered_peak(config, size)
                budget = card.memory_gib * MEMORY_HEADROOM
                lines.append(
                    f"{accelerator:22} {size:4} {adapter or '-':12} {config['adapter']:7} "
                    f"{config['micro_batch_size']:3} {config['gradient_accumulation_steps']:2} "
                    f"{config['gradient_checkpointing']!s:5} {LIGER_PLUGIN in (config.get('plugins') or [])!s:5} "
                    f"{bool(config.get('torch_compile'))!s:7} {peak:6.1f}/{budget:5.1f}     {peak <= budget}"
                )
    return "\n".join(lines) + "\n"


def test_the_table_of_rendered_defaults_is_pinned():
    table = _table()
    if os.environ.get("MMFT_UPDATE_GOLDEN"):
        GOLDEN.write_text(table)
    assert table == GOLDEN.read_text(), f"training defaults changed; review and regenerate {GOLDEN.name}"


@pytest.mark.parametrize("accelerator", sorted(PROFILES))
@pytest.mark.parametrize("size", sorted(MODEL_SHAPES))
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_rendered_config_fits_85_percent_of_its_card(accelerator, size, adapter):
    training = {"adapter": adapter, "loadIn4bit": True} if adapter == "qlora" else {"adapter": adapter}
    config = build_axolotl_config(_spec(accelerator, size, **training), DatasetPaths("/d/train.jsonl"))
    defaults = plan(accelerator, MODEL_SHAPES[size], adapter=adapter)
    budget = PROFILES[accelerator].memory_gib * MEMORY_HEADROOM
    if not defaults.fits:
        # Only where not even the least memory fits (the adapter asked for, else QLoRA, with checkpointing at micro
        # batch 1): then that is what renders, and the run fails by name if it runs out of memory.
        least = predicted_peak_gib(MODEL_SHAPES[size], adapter or "qlora", 1, True, liger=True)
        assert least > budget
        assert (config["micro_batch_size"], config["gradient_checkpointing"]) == (1, True)
        return
    assert _rendered_peak(config, size) <= budget
    assert config["micro_batch_size"] * config["gradient_accumulation_steps"] >= SEED_EFFECTIVE_BATCH
    assert config["adapter"] == (adapter or config["adapter"])
    assert bool(config.get("torch_compile")) == (config["adapter"] == "lora")


def test_the_sample_finetunejob_fits_the_a100_40gb_it_names():
    sample = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    spec = FineTuneJobSpec.model_validate(sample["spec"])
    config = build_axolotl_config(spec, DatasetPaths("/d/train.jsonl"))
    assert spec.compute.accelerator == "nvidia-tesla-a100" and config["adapter"] == "qlora"
    assert _rendered_peak(config, "4B") <= PROFILES["nvidia-tesla-a100"].memory_gib * MEMORY_HEADROOM


def test_the_memory_model_reproduces_its_measurements():
    for (adapter, liger, checkpointing), line in MEASURED.items():
        for micro_batch in (8, 32):
            measured = line.fixed_gib + line.per_sample_gib * micro_batch
            predicted = predicted_peak_gib(GEMMA3_4B, adapter, micro_batch, checkpointing, liger)
            assert predicted == pytest.approx(measured, abs=0.05), (adapter, liger, checkpointing, micro_batch)


def test_values_the_user_sets_always_win():
    config = build_axolotl_config(
        _spec("nvidia-l4", "27B", adapter="lora", microBatchSize=64, gradientCheckpointing=False,
              gradientAccumulationSteps=3),
        DatasetPaths("/d/train.jsonl"),
    )
    assert (config["adapter"], config["micro_batch_size"], config["gradient_checkpointing"],
            config["gradient_accumulation_steps"]) == ("lora", 64, False, 3)
    assert not plan("nvidia-l4", MODEL_SHAPES["27B"], adapter="lora", micro_batch=64, checkpointing=False).fits


def test_a_pinned_micro_batch_gets_checkpointing_only_if_it_needs_it():
    roomy = plan("nvidia-h200-141gb", GEMMA3_4B, micro_batch=16)
    tight = plan("nvidia-tesla-a100", MODEL_SHAPES["12B"], adapter="qlora", micro_batch=16)
    assert (roomy.adapter, roomy.gradient_checkpointing) == ("lora", False)
    assert tight.gradient_checkpointing is True and tight.fits


def test_turning_liger_off_is_planned_for():
    with_liger = plan("nvidia-tesla-a100", GEMMA3_4B, adapter="qlora")
    without = plan("nvidia-tesla-a100", GEMMA3_4B, adapter="qlora", liger=False)
    assert without.micro_batch_size < with_liger.micro_batch_size and without.fits
    config = build_axolotl_config(_spec("nvidia-tesla-a100", "4B", adapter="qlora", loadIn4bit=True,
                                        overrides={"plugins": []}), DatasetPaths("/d/train.jsonl"))
    assert config["micro_batch_size"] == without.micro_batch_size and not config["plugins"]


@pytest.mark.parametrize("size", sorted(MODEL_SHAPES))
def test_more_memory_never_means_a_smaller_effective_batch_or_slower_options(size):
    by_memory = sorted(PROFILES, key=lambda name: PROFILES[name].memory_gib)
    plans = [plan(name, MODEL_SHAPES[size]) for name in by_memory]
    speed_rank = {("lora", False): 0, ("lora", True): 1, ("qlora", False): 2, ("qlora", True): 3}
    ranks = [speed_rank[(p.adapter, p.gradient_checkpointing)] for p in plans]
    assert ranks == sorted(ranks, reverse=True), [(name, p) for name, p in zip(by_memory, plans, strict=True)]


@pytest.mark.parametrize(("name", "declared", "expected"), [
    ("google/gemma-3-12b-it", None, "12B"),
    ("google/gemma-3-27b-pt", None, "27B"),
    ("google/gemma-3-4b-it", None, "4B"),
    ("/models/my-finetune", None, "4B"),
    ("google/gemma-3-4b-it", "27B", "27B"),
    ("org/model-1.5b", None, "4B"),
])
def test_the_model_size_is_declared_or_read_from_the_name(name, declared, expected):
    assert model_shape(name, declared).name == expected


def test_the_shapes_have_gemma_3s_parameter_counts():
    counts = {name: round(shape.parameters / 1e9, 1) for name, shape in MODEL_SHAPES.items()}
    assert counts == {"4B": 4.3, "12B": 12.2, "27B": 27.4}


def test_the_api_offers_every_accelerator_of_the_table():
    from typing import get_args

    from mmft_operator.api.common import Accelerator

    assert set(get_args(Accelerator)) == set(PROFILES)
    assert {"nvidia-h200-141gb", "nvidia-b200"} <= set(PROFILES)
    assert PROFILES["nvidia-h200-141gb"].machine_type == "a3-ultragpu-8g"
    assert PROFILES["nvidia-b200"].machine_type == "a4-highgpu-8g"
