"""Frozen towers without autograd: the same LoRA gradients, and no gradient work inside the vision tower."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from mmft_trainer.frozen_towers import frozen_towers, run_frozen_towers_without_grad  # noqa: E402

pytestmark = pytest.mark.ml


def lora_model(model_dir):
    from transformers import Gemma3ForConditionalGeneration

    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj|up_proj)")
    model = peft.get_peft_model(model, config)
    model.enable_input_require_grads()  # what PEFT/Axolotl do; it hooks the SigLIP patch embedding too
    return model


def batch(model_dir, data):
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    rows = [json.loads(line) for line in data.read_text().splitlines()[:2]]
    texts = [processor.apply_chat_template(row["messages"], tokenize=False) for row in rows]
    images = [[Image.open(row["messages"][1]["content"][0]["path"]).convert("RGB")] for row in rows]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    inputs["labels"] = inputs["input_ids"].clone()
    return inputs


def lora_gradients(model, inputs, tower_outputs: list) -> dict[str, torch.Tensor]:
    tower = model.base_model.model.model.vision_tower
    handle = tower.register_forward_hook(lambda _m, _i, output: tower_outputs.append(output.last_hidden_state))
    try:
        model(**inputs).loss.backward()
    finally:
        handle.remove()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def model_dir(tiny_gemma3_dir):
    return tiny_gemma3_dir


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tiny_gemma import write_chat_dataset

    return write_chat_dataset(tmp_path_factory.mktemp("frozen-towers-data"), rows=2)


def test_the_vision_tower_and_projector_are_found_frozen_and_the_language_model_is_not(model_dir) -> None:
    names = frozen_towers(lora_model(model_dir))
    assert sorted(name.rsplit(".", 1)[-1] for name in names) == ["multi_modal_projector", "vision_tower"]


def test_lora_gradients_are_unchanged_and_the_tower_output_needs_no_gradient(model_dir, data) -> None:
    inputs = batch(model_dir, data)
    before_outputs: list = []
    before = lora_gradients(lora_model(model_dir), inputs, before_outputs)
    assert before_outputs[0].requires_grad  # the waste this module removes: autograd records the frozen tower

    model = lora_model(model_dir)
    assert len(run_frozen_towers_without_grad(model)) == 2
    assert run_frozen_towers_without_grad(model) == []  # wrapping twice is a no-op
    after_outputs: list = []
    after = lora_gradients(model, inputs, after_outputs)

    assert not after_outputs[0].requires_grad
    assert before.keys() == after.keys() and before
    for name, gradient in before.items():
        torch.testing.assert_close(after[name], gradient, msg=name)


def test_a_tower_with_trainable_parameters_keeps_autograd(model_dir) -> None:
    model = lora_model(model_dir)
    projector = model.base_model.model.model.multi_modal_projector
    next(projector.parameters()).requires_grad_(True)
    assert [name.rsplit(".", 1)[-1] for name in frozen_towers(model)] == ["vision_tower"]
