"""The sample FineTuneJob renders the seed's gemma3-melanoma.yaml, except for differences made on purpose."""

from __future__ import annotations

from pathlib import Path

import yaml
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.builders.axolotl_config import DatasetPaths, build_axolotl_config

ROOT = Path(__file__).resolve().parents[2]
SEED = yaml.safe_load((Path(__file__).parent / "golden/seed-gemma3-melanoma.yaml").read_text())

# key -> why mmft differs from the seed. Anything else must be identical.
DELIBERATE_DIFFERENCES = {
    "model_type": "dropped: Axolotl picks the class from the model config; the seed's value is text-only by name",
    "tokenizer_type": "dropped: the processor (processor_type) brings the tokenizer of whatever model is used",
    "lora_target_modules": "the seed's regex matches no Gemma 3 module in current transformers",
    "gradient_checkpointing": "sized to the accelerator's memory (docs/benchmarks.md)",
    "gradient_accumulation_steps": "sized to the accelerator's memory",
    "micro_batch_size": "sized to the accelerator's memory",
    "save_strategy": "steps: a Spot preemption loses at most saveSteps of work, not an epoch",
    "flash_attention": "sdpa by default: flash-attention's kernel is downloaded from a hub at run time",
    "datasets": "the DatasetPrep's split instead of a hand-copied path",
    "output_dir": "the operator's output volume",
}
ADDED = {
    "test_datasets", "load_in_8bit", "save_steps", "attn_implementation", "bf16", "tf32", "dataloader_num_workers",
    "dataloader_pin_memory", "seed",
    # Liger's fused linear cross-entropy: the memory model (training_defaults) sizes the micro batch with it.
    "plugins", "liger_rms_norm", "liger_rope", "liger_fused_linear_cross_entropy",
}


def _rendered() -> dict:
    sample = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/finetunejob.yaml").read_text())
    spec = FineTuneJobSpec.model_validate(sample["spec"])
    return build_axolotl_config(spec, DatasetPaths("/mnt/gcs/prepared/isic2020/train.jsonl",
                                                   "/mnt/gcs/prepared/isic2020/validation.jsonl"))


def test_every_seed_setting_is_kept_or_changed_on_purpose() -> None:
    rendered = _rendered()
    for key, seed_value in SEED.items():
        if key in DELIBERATE_DIFFERENCES:
            continue
        assert key in rendered, f"the seed sets {key}; the rendered config lost it"
        assert _same(rendered[key], seed_value), f"{key}: seed {seed_value!r}, rendered {rendered[key]!r}"


def _same(rendered, seed) -> bool:  # noqa: ANN001
    # PyYAML reads the seed's `2e-5` as a string; Axolotl's pydantic schema coerces it to a float.
    if isinstance(seed, str) and isinstance(rendered, float):
        return float(seed) == rendered
    return rendered == seed


def test_nothing_is_added_silently() -> None:
    unexplained = set(_rendered()) - set(SEED) - ADDED
    assert not unexplained, f"rendered keys neither in the seed nor listed as additions: {sorted(unexplained)}"


def test_fixed_target_modules_match_current_gemma3_names_and_the_seeds_do_not() -> None:
    import re

    module = "model.language_model.layers.3.self_attn.q_proj"
    assert re.search(_rendered()["lora_target_modules"], module)
    assert not re.search(SEED["lora_target_modules"], module)


def test_dataset_entries_keep_the_seeds_format() -> None:
    rendered = _rendered()
    seed_entry = {k: v for k, v in SEED["datasets"][0].items() if k != "path"}
    assert {k: v for k, v in rendered["datasets"][0].items() if k != "path"} == seed_entry
    assert rendered["datasets"][0]["path"].endswith("/train.jsonl")
