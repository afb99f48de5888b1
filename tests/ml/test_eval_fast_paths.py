"""The logprob execution options (mmft_evaluator.execution) give the eager model's scores, on CPU with the tiny
Gemma 3: torch.compile of the vision tower / language model (inductor's CPU backend, real compiles), each vision
SDPA kernel choice, and the fixed batch shape that pads the last batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_gemma import ANSWERS

pytestmark = pytest.mark.ml

NEGATIVE, POSITIVE = ANSWERS


@pytest.fixture(scope="module")
def loaded(tiny_gemma3_dir):
    import torch
    from mmft_evaluator.loading import load_model
    from mmft_evaluator.model_spec import ModelSpec

    loaded = load_model(ModelSpec(name="tiny", model=str(tiny_gemma3_dir)), torch.device("cpu"),
                        Path("/tmp/mmft-test-cache"))
    # The tiny model's image projection starts at zero (Gemma 3's init), so images would not move any score and
    # a broken vision tower would go unnoticed; a random projection makes every score depend on its image.
    projection = loaded.model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_(torch.randn(projection.shape, generator=torch.Generator().manual_seed(0)))
    return loaded


@pytest.fixture(scope="module")
def examples(tiny_chat_dataset):
    from mmft_evaluator.examples import read_examples

    return read_examples(tiny_chat_dataset, POSITIVE, NEGATIVE, 7)


def _scores(loaded, examples, options=None, batch_size=4):
    import torch
    from mmft_evaluator.execution import apply_execution
    from mmft_evaluator.scoring import pil_loader, score_logprob

    applied = apply_execution(loaded.model, options, torch.device("cpu")) if options else None
    try:
        scored = score_logprob(loaded, examples, POSITIVE, NEGATIVE, batch_size, 0, pil_loader(Path("/tmp")),
                               pad_to_batch=bool(options and options.pads_batches))
        errors = applied.compile_errors() if applied else {}
    finally:
        if applied:
            applied.restore()
    assert [s.example for s in scored] == list(examples)
    return [s.score for s in scored], errors


@pytest.fixture(scope="module")
def eager_scores(loaded, examples):
    scores, _ = _scores(loaded, examples)
    assert len(set(round(s, 6) for s in scores)) > 1
    return scores


@pytest.mark.parametrize("compile_target", ["vision", "vision+language"])
def test_compiled_modules_give_the_eager_scores(loaded, examples, eager_scores, compile_target):
    import torch._dynamo
    from mmft_evaluator.execution import ExecutionOptions

    torch._dynamo.reset()
    # 7 examples in batches of 4: the last batch is padded to 4 rows and the padding's scores are dropped.
    scores, errors = _scores(loaded, examples, ExecutionOptions(compile=compile_target))
    assert errors == {}, "the compile fell back to eager, so this test compared eager with eager"
    assert max(abs(a - b) for a, b in zip(scores, eager_scores, strict=True)) < 1e-4


@pytest.mark.parametrize("kernel", ["flash", "efficient", "cudnn", "math"])
def test_each_vision_attention_kernel_gives_the_eager_scores(loaded, examples, eager_scores, kernel):
    from mmft_evaluator.execution import ExecutionOptions

    scores, _ = _scores(loaded, examples, ExecutionOptions(vision_attention=kernel))
    assert max(abs(a - b) for a, b in zip(scores, eager_scores, strict=True)) < 1e-5


def test_restore_puts_the_eager_forward_back(loaded):
    import torch
    from mmft_evaluator.execution import ExecutionOptions, apply_execution

    vision = loaded.model.model.vision_tower
    applied = apply_execution(loaded.model, ExecutionOptions(compile="vision", vision_attention="math"),
                              torch.device("cpu"))
    assert "forward" in vision.__dict__
    applied.restore()
    assert "forward" not in vision.__dict__ and "forward" not in loaded.model.model.language_model.__dict__


def test_a_failing_compile_runs_eagerly_and_says_why(loaded, examples, eager_scores):
    import torch._dynamo
    from mmft_evaluator import execution

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("compiler exploded on purpose")

    torch._dynamo.reset()
    vision = loaded.model.model.vision_tower
    forward = execution._ExecutedForward("vision_tower", vision.forward, None, {"backend": broken_backend})
    vision.forward = forward
    try:
        scores, _ = _scores(loaded, examples)
    finally:
        del vision.forward
    assert forward.compiled is None and "compiler exploded on purpose" in forward.compile_error
    assert scores == pytest.approx(eager_scores, abs=1e-6)


def test_padded_last_batch_gives_the_unpadded_scores(loaded, examples, eager_scores):
    from mmft_evaluator.scoring import pil_loader, score_logprob

    padded = score_logprob(loaded, examples, POSITIVE, NEGATIVE, 5, 0, pil_loader(Path("/tmp")), pad_to_batch=True)
    assert [s.score for s in padded] == pytest.approx(eager_scores, abs=1e-5)
    assert len(padded) == len(examples)


def test_auto_compiles_only_large_cuda_runs_and_explicit_choices_win():
    from mmft_evaluator.execution import AUTO_COMPILE_MIN_IMAGES, ExecutionOptions, resolve_execution

    assert resolve_execution() == ExecutionOptions()
    assert resolve_execution(images=AUTO_COMPILE_MIN_IMAGES - 1, device_type="cuda").compile == "none"
    large = resolve_execution(images=AUTO_COMPILE_MIN_IMAGES, device_type="cuda")
    assert large.compile == "vision+language" and large.pads_batches
    assert resolve_execution(images=10 * AUTO_COMPILE_MIN_IMAGES, device_type="cpu").compile == "none"
    assert resolve_execution(compile="none", images=10 * AUTO_COMPILE_MIN_IMAGES, device_type="cuda").compile == "none"
    assert resolve_execution(compile="vision").compile == "vision" and resolve_execution(compile="vision").pads_batches
    assert resolve_execution(compile="vision+language").compile == "vision+language"
    with pytest.raises(ValueError, match="vision_attention='fast'"):
        ExecutionOptions(vision_attention="fast")


def test_cli_passes_execution_options_through(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, monkeypatch, caplog):
    import json
    import logging

    from mmft_operator import cli

    monkeypatch.chdir(tmp_path)
    # Axolotl, imported by earlier tests of the same session, gives every new logger a filter that drops INFO records
    # of non-Axolotl loggers; `mmft evaluate` never imports Axolotl, so this test's logger goes without it.
    monkeypatch.setattr(logging.getLogger("mmft_evaluator.evaluation"), "filters", [])
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="mmft_evaluator.evaluation"):
        code = cli.main(["evaluate", "--test-jsonl", str(tiny_chat_dataset), "--model", f"m={tiny_gemma3_dir}",
                         "--output-dir", str(out), "--limit", "5", "--batch-size", "4", "--workers", "0",
                         "--device", "cpu", "--compile", "vision", "--vision-attention", "math"])
    assert code == 0
    assert "logprob execution compile=vision,mode=default,vision_attention=math" in caplog.text
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 5


def _worker_normalised_scores(loaded, examples):
    """Scores of batches the processor normalised itself (the path without deferral), for comparison."""
    import torch
    from mmft_evaluator.scoring import PromptCollator, answer_token_ids, pil_loader

    positive, negative = answer_token_ids(loaded.processor.tokenizer, POSITIVE, NEGATIVE)
    _, batch = PromptCollator(loaded.processor, pil_loader(Path("/tmp")))(examples)
    with torch.inference_mode():
        logits = loaded.model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1, :].float()
    return torch.sigmoid(logits[:, positive] - logits[:, negative]).tolist()


def test_pixels_normalised_on_the_device_equal_the_processors_and_give_its_scores(loaded, examples, eager_scores):
    import torch
    from mmft_evaluator.scoring import DevicePixelNormalizer, PromptCollator, input_pipeline, pil_loader

    loader = pil_loader(Path("/tmp"))
    collator, normalizer = input_pipeline(loaded.processor, loader, examples, torch.float32)
    assert isinstance(normalizer, DevicePixelNormalizer) and collator.defer_normalization
    _, deferred = collator(examples[:3])
    _, full = PromptCollator(loaded.processor, loader)(examples[:3])
    assert deferred["pixel_values"].dtype == torch.uint8
    assert torch.equal(normalizer(deferred)["pixel_values"], full["pixel_values"])
    assert torch.equal(deferred["input_ids"], full["input_ids"])
    assert eager_scores == pytest.approx(_worker_normalised_scores(loaded, examples), abs=1e-6)


def test_normalisation_stays_in_the_workers_where_the_device_cannot_reproduce_it(loaded, examples, monkeypatch):
    import torch
    from mmft_evaluator.scoring import DevicePixelNormalizer, input_pipeline, pil_loader, score_logprob
    from transformers import Gemma3ImageProcessorPil

    loader = pil_loader(Path("/tmp"))
    image_processor = loaded.processor.image_processor
    original = type(image_processor).rescale_and_normalize
    monkeypatch.setattr(type(image_processor), "rescale_and_normalize",
                        lambda self, images, *args: original(self, images, *args) + 1e-3)
    assert DevicePixelNormalizer.for_processor(loaded.processor, loader, examples[0], torch.float32) is None
    collator, normalizer = input_pipeline(loaded.processor, loader, examples, torch.float32)
    assert normalizer is None and not collator.defer_normalization
    monkeypatch.undo()

    # The PIL-backed image processor (no torchvision) has no rescale_and_normalize to run on the device.
    monkeypatch.setattr(loaded.processor, "image_processor", Gemma3ImageProcessorPil(**image_processor.to_dict()))
    assert DevicePixelNormalizer.for_processor(loaded.processor, loader, examples[0], torch.float32) is None
    scored = score_logprob(loaded, examples, POSITIVE, NEGATIVE, 4, 0, loader)
    assert len(scored) == len(examples) and all(0.0 < s.score < 1.0 for s in scored)


def test_compiled_forced_choice_gives_the_eager_scores(loaded, examples):
    """The prompt pass and the answers' cached pass (another shape) both run through the compiled modules."""
    import math

    import torch
    import torch._dynamo
    from mmft_evaluator.execution import ExecutionOptions, apply_execution
    from mmft_evaluator.scoring import pil_loader, score_forced_choice

    # Several tokens each with the tiny tokenizer, so the cached answer pass runs.
    answers = ("Yes, this does appear to be malignant melanoma.", "No, this does not appear to be malignant melanoma.")
    loader = pil_loader(Path("/tmp"))
    eager = [s.score for s in score_forced_choice(loaded, examples, *answers, 4, 0, loader)]
    torch._dynamo.reset()
    applied = apply_execution(loaded.model, ExecutionOptions(compile="vision+language"), torch.device("cpu"))
    try:
        compiled = [s.score for s in score_forced_choice(loaded, examples, *answers, 4, 0, loader, pad_to_batch=True)]
        assert applied.compile_errors() == {}
    finally:
        applied.restore()

    def log_odds(score):
        return math.log(score) - math.log1p(-score)

    assert [log_odds(s) for s in compiled] == pytest.approx([log_odds(s) for s in eager], abs=1e-3)
