"""Forced-choice scoring on a model that explains before it answers, as MedGemma does ("... suggestive of melanoma.
Yes, this appears to be malignant melanoma."): a tiny Gemma 3 is trained here, on CPU (~1 minute), to answer that
way, and the forced-choice calls match the answers it generates where first-token (`logprob`) calls do not. Also:
the prompt computed once with a key/value cache gives the likelihoods of full, uncached passes over prompt + answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.ml

POSITIVE = "Yes, this does appear to be malignant melanoma."
NEGATIVE = "No, this does not appear to be malignant melanoma."
# Explain first, then answer (MedGemma: "... suggestive of melanoma. Yes, this appears to be malignant melanoma.").
EXPLANATIONS = {1: "this does appear to be malignant melanoma. ", 0: "this does not appear to be malignant melanoma. "}
ANSWERS = {1: POSITIVE, 0: NEGATIVE}
ROWS = 12


def _explain_first_dataset(out_dir: Path) -> Path:
    """The tiny lesions of write_chat_dataset, with explain-first assistant answers."""
    from tiny_gemma import write_chat_dataset

    source = write_chat_dataset(out_dir, rows=ROWS)
    rows = []
    for line in source.read_text().splitlines():
        row = json.loads(line)
        label = 1 if "malignant" in row["messages"][-1]["content"][0]["text"] else 0
        row["messages"][-1]["content"][0]["text"] = EXPLANATIONS[label] + ANSWERS[label]
        rows.append(json.dumps({**row, "label": label}))
    path = out_dir / "explain_first.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def _train(loaded, examples, steps: int):
    """Full fine-tune on explanation + answer, loss on those tokens only. The answer's tokens are the ones
    forced-choice scores (mmft_evaluator.scoring.answer_continuations), so training and scoring read the same
    tokens whatever the tiny tokenizer merges."""
    import torch
    from mmft_evaluator.scoring import PromptCollator, answer_continuations, pil_loader

    processor, model, tokenizer = loaded.processor, loaded.model, loaded.processor.tokenizer
    _, prompts = PromptCollator(processor, pil_loader(Path("/tmp")))(examples)  # left-padded; all the same length
    answers = dict(zip((1, 0), answer_continuations(processor, examples[0], POSITIVE, NEGATIVE), strict=True))
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    targets = [tokenizer.encode(EXPLANATIONS[e.label], add_special_tokens=False) + answers[e.label] + [end_of_turn]
               for e in examples]
    length = max(len(t) for t in targets)
    padded = torch.tensor([t + [tokenizer.pad_token_id] * (length - len(t)) for t in targets])
    answer_mask = torch.tensor([[1] * len(t) + [0] * (length - len(t)) for t in targets])
    batch = {**prompts, "input_ids": torch.cat([prompts["input_ids"], padded], 1),
             "attention_mask": torch.cat([prompts["attention_mask"], answer_mask], 1)}
    if "token_type_ids" in prompts:
        batch["token_type_ids"] = torch.cat([prompts["token_type_ids"], torch.zeros_like(padded)], 1)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, -length:] = padded.masked_fill(answer_mask == 0, -100)
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return loss.item()


@pytest.fixture(scope="module")
def explain_first(tiny_gemma3_dir, tmp_path_factory):
    """(trained model, examples, parsed calls of its generated answers, the answers)."""
    import torch
    from mmft_evaluator.examples import read_examples
    from mmft_evaluator.loading import load_model
    from mmft_evaluator.model_spec import ModelSpec
    from mmft_evaluator.scoring import generate_answers, pil_loader

    examples = read_examples(_explain_first_dataset(tmp_path_factory.mktemp("explain-first")), POSITIVE, NEGATIVE)
    loaded = load_model(ModelSpec(name="tiny", model=str(tiny_gemma3_dir)), torch.device("cpu"),
                        Path("/tmp/mmft-test-cache"))
    # Gemma 3 initialises the image projection to zero: start it random so the answers can depend on the image.
    projection = loaded.model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_(0.1 * torch.randn(projection.shape, generator=torch.Generator().manual_seed(0)))
    loss = _train(loaded, examples, steps=60)
    assert loss < 0.3, f"the tiny model did not learn its answers (loss {loss:.3f})"
    generated = generate_answers(loaded, examples, POSITIVE, NEGATIVE, 8, 0, pil_loader(Path("/tmp")),
                                 max_new_tokens=48)
    return loaded, examples, [g.parsed for g in generated], [g.answer for g in generated]


def test_the_model_explains_first_and_its_answers_are_right(explain_first):
    _, examples, calls, answers = explain_first
    assert all(not answer.lower().startswith(("yes", "no")) for answer in answers), answers
    assert calls == [e.label for e in examples], answers


def test_forced_choice_calls_match_the_answers_where_first_token_calls_do_not(explain_first):
    from mmft_evaluator.scoring import pil_loader, score_forced_choice, score_logprob

    loaded, examples, calls, _ = explain_first
    loader = pil_loader(Path("/tmp"))
    forced = score_forced_choice(loaded, examples, POSITIVE, NEGATIVE, 8, 0, loader)
    first_token = score_logprob(loaded, examples, POSITIVE, NEGATIVE, 8, 0, loader)
    forced_calls = [int(s.score >= 0.5) for s in forced]
    first_token_calls = [int(s.score >= 0.5) for s in first_token]
    assert forced_calls == calls
    agreement = sum(a == b for a, b in zip(first_token_calls, calls, strict=True)) / len(calls)
    assert agreement <= 0.75, f"first-token calls agreed with {agreement:.0%} of the answers"


def test_the_first_answer_token_gets_little_of_the_models_mass(explain_first):
    """Why first-token scoring fails on this model: its first token is the explanation's, not "Yes" or "No"."""
    import torch
    from mmft_evaluator.scoring import PromptCollator, answer_token_ids, pil_loader

    loaded, examples, _, _ = explain_first
    positive, negative = answer_token_ids(loaded.processor.tokenizer, POSITIVE, NEGATIVE)
    _, batch = PromptCollator(loaded.processor, pil_loader(Path("/tmp")))(examples)
    with torch.inference_mode():
        probabilities = loaded.model(**batch, logits_to_keep=1).logits[:, -1].float().softmax(-1)
    assert float((probabilities[:, positive] + probabilities[:, negative]).max()) < 0.05


def test_the_cached_prompt_gives_the_likelihoods_of_full_passes(explain_first):
    import torch
    from mmft_evaluator.scoring import PromptCollator, answer_continuations, pil_loader, score_forced_choice

    loaded, examples, _, _ = explain_first
    examples = examples[:3]
    loader = pil_loader(Path("/tmp"))
    # Batches of 2 over 3 examples: a full batch and a smaller last one.
    cached = [s.score for s in score_forced_choice(loaded, examples, POSITIVE, NEGATIVE, 2, 0, loader)]
    answers = answer_continuations(loaded.processor, examples[0], POSITIVE, NEGATIVE)
    uncached = []
    for example in examples:
        _, prompt = PromptCollator(loaded.processor, loader)([example])
        likelihoods = []
        for answer in answers:
            tokens = torch.tensor([answer])
            batch = {**prompt, "input_ids": torch.cat([prompt["input_ids"], tokens], 1),
                     "attention_mask": torch.ones(1, prompt["input_ids"].shape[1] + len(answer), dtype=torch.long)}
            if "token_type_ids" in prompt:
                batch["token_type_ids"] = torch.cat([prompt["token_type_ids"], torch.zeros_like(tokens)], 1)
            with torch.inference_mode():
                logits = loaded.model(**batch).logits[0, -len(answer) - 1:-1].float()
            likelihoods.append(float(logits.log_softmax(-1).gather(-1, tokens.T).sum()))
        uncached.append(float(torch.sigmoid(torch.tensor(likelihoods[0] - likelihoods[1], dtype=torch.float64))))
    assert cached == pytest.approx(uncached, abs=1e-5)
    assert len({round(score, 4) for score in cached}) > 1
