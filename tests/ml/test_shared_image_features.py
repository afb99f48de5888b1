"""Image features shared between the models of one Evaluation (mmft_evaluator.image_features), on CPU with the tiny
Gemma 3: the scores are those of every model computing its own features, and only models whose adapter leaves the
vision tower and projector alone reuse another model's features."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mmft_operator.model_location import format_location

pytestmark = pytest.mark.ml

# Both several tokens long with the tiny tokenizer (it merges its corpus sentences, the seed's answers, into one).
POSITIVE = "Yes, this does appear to be malignant melanoma."
NEGATIVE = "No, this does not appear to be malignant melanoma."


@pytest.fixture(scope="module")
def models(tiny_gemma3_dir, tmp_path_factory):
    """A base model with a random image projection (Gemma 3 starts it at zero, which would make every score blind
    to the image features), a LoRA adapter of its language model, and one that also adapts the vision tower."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = tmp_path_factory.mktemp("shared-features")
    model = AutoModelForImageTextToText.from_pretrained(tiny_gemma3_dir, dtype=torch.float32)
    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(0)))
    model.save_pretrained(root / "base")
    AutoProcessor.from_pretrained(tiny_gemma3_dir).save_pretrained(root / "base")
    adapters = {
        # Axolotl's usual Gemma 3 target: the language model's projections only.
        "language": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        # Bare names: PEFT matches them in the vision tower too.
        "vision": ["q_proj", "v_proj"],
    }
    for name, targets in adapters.items():
        torch.manual_seed(1)
        adapted = get_peft_model(AutoModelForImageTextToText.from_pretrained(root / "base", dtype=torch.float32),
                                 LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
        adapted.save_pretrained(root / f"adapter-{name}")
    base = str(root / "base")
    return {"base": base, "tuned": format_location(base, str(root / "adapter-language")),
            "vision-tuned": format_location(base, str(root / "adapter-vision"))}


def _run(models, data, out: Path, method: str, share: bool) -> tuple[dict, dict]:
    from mmft_evaluator.evaluation import EvaluateOptions, run_evaluation
    from mmft_evaluator.model_spec import parse_model_arguments

    summary = run_evaluation(EvaluateOptions(
        test_jsonl=str(data), models=tuple(parse_model_arguments([f"{k}={v}" for k, v in models.items()])),
        output_dir=out, method=method, batch_size=4, workers=0, device="cpu", positive_answer=POSITIVE,
        negative_answer=NEGATIVE, limit=6, cache_dir=out / "cache", share_image_features=share))
    log_odds: dict[str, list[float]] = {}  # compared as log-odds: an untrained model's scores sit near 0 or 1
    for line in (out / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        log_odds.setdefault(row["model"], []).append(math.log(row["score"]) - math.log1p(-row["score"]))
    return summary, log_odds


@pytest.mark.parametrize("method", ["logprob", "forced-choice"])
def test_shared_features_give_the_scores_of_unshared_ones(models, tiny_chat_dataset, tmp_path, method):
    shared, shared_scores = _run(models, tiny_chat_dataset, tmp_path / "shared", method, share=True)
    unshared, unshared_scores = _run(models, tiny_chat_dataset, tmp_path / "unshared", method, share=False)
    reused = {name: result["reusedImageFeatures"] for name, result in shared["models"].items()}
    assert reused == {"base": False, "tuned": True, "vision-tuned": False}
    assert not any(result["reusedImageFeatures"] for result in unshared["models"].values())
    for name in models:
        assert shared_scores[name] == pytest.approx(unshared_scores[name], abs=1e-5), name
    # The adapters change the scores, so equal scores are not the base model's scores three times.
    assert shared_scores["tuned"] != pytest.approx(shared_scores["base"], abs=1e-2)
    assert shared_scores["vision-tuned"] != pytest.approx(shared_scores["tuned"], abs=1e-2)


def test_an_adapter_of_the_vision_tower_is_told_apart_from_its_config(models, tmp_path):
    import torch
    from mmft_evaluator.loading import load_model
    from mmft_evaluator.model_spec import parse_model_argument

    keys = {name: load_model(parse_model_argument(f"{name}={spec}"), torch.device("cpu"), tmp_path).sharing_key
            for name, spec in models.items()}
    assert keys["base"] is not None and keys["tuned"] == keys["base"]
    assert keys["vision-tuned"] is None


def test_a_store_hands_back_what_was_put_and_nothing_it_lacks():
    import torch
    from mmft_evaluator.image_features import ImageFeatureStore

    store = ImageFeatureStore("key")
    first, second = torch.arange(12.0).view(3, 2, 2), torch.arange(12.0, 24.0).view(3, 2, 2)
    store.put(["a", "b", "c"], first)
    store.put(["d", "e", "e"], second)  # a padded batch repeats its last row
    assert len(store) == 5
    assert torch.equal(store.get(["a", "b", "c"], torch.device("cpu")), first)
    assert torch.equal(store.get(["c", "d"], torch.device("cpu")), torch.stack([first[2], second[0]]))
    assert store.get(["a", "z"], torch.device("cpu")) is None
