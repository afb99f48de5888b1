"""Per-accelerator defaults: sized by the memory model measured on the H200, within each card's memory."""

from __future__ import annotations

import pytest
from mmft_operator.training_defaults import (
    ACCELERATORS,
    LIGER_PLUGIN,
    MEMORY_HEADROOM,
    SEED_EFFECTIVE_BATCH,
    defaults_for,
    plan,
)


@pytest.mark.parametrize("accelerator", sorted(ACCELERATORS))
def test_every_card_gets_a_plan_inside_its_memory_with_at_least_the_seeds_effective_batch(accelerator):
    defaults = defaults_for(accelerator)
    assert defaults.predicted_peak_gib <= ACCELERATORS[accelerator].memory_gib * MEMORY_HEADROOM
    assert defaults.micro_batch_size * defaults.gradient_accumulation_steps >= SEED_EFFECTIVE_BATCH


def test_the_table_the_operator_renders():
    table = {name: (d.adapter, d.micro_batch_size, d.gradient_accumulation_steps, d.gradient_checkpointing)
             for name, d in ((name, defaults_for(name)) for name in ACCELERATORS)}
    assert table == {
        "nvidia-tesla-a100": ("lora", 16, 1, False),
        "nvidia-a100-80gb": ("lora", 32, 1, False),
        "nvidia-h100-80gb": ("lora", 32, 1, False),
        "nvidia-h100-mega-80gb": ("lora", 32, 1, False),
        "nvidia-l4": ("lora", 8, 1, False),
        "nvidia-h200-141gb": ("lora", 32, 1, False),
    }


def test_more_memory_never_means_a_smaller_micro_batch():
    sizes = [plan(memory, 4).micro_batch_size for memory in range(16, 200, 4)]
    assert sizes == sorted(sizes)


def test_small_cards_fall_back_to_the_seeds_qlora_with_checkpointing():
    defaults = plan(12, 4)
    assert (defaults.adapter, defaults.micro_batch_size, defaults.gradient_checkpointing) == ("qlora", 1, True)
    options = defaults.axolotl_options()
    assert options["load_in_4bit"] is True and "torch_compile" not in options


def test_lora_options_carry_the_measured_speedups():
    options = defaults_for("nvidia-h100-80gb").axolotl_options()
    assert options["attn_implementation"] == "sdpa" and options["torch_compile"] is True
    assert options["plugins"] == [LIGER_PLUGIN] and options["liger_fused_linear_cross_entropy"] is True
    assert options["load_in_4bit"] is False and options["bf16"] is True


def test_too_little_memory_and_unknown_cards_are_errors():
    with pytest.raises(ValueError, match="too little"):
        plan(4, 2)
    with pytest.raises(KeyError, match="nvidia-t4"):
        defaults_for("nvidia-t4")
