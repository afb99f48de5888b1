"""Scoring examples with a loaded model: `logprob` (one batched forward pass, P(positive) from the first answer
token), `forced-choice` (the log-likelihood of the whole positive answer against the whole negative answer, the
prompt computed once for both) and `generate` (the seed's free-text answer, batched, parsed).

Image decoding, resizing and tokenisation run in DataLoader worker processes so the GPU never waits on the
main thread, and pixel rescaling/normalisation runs on the GPU where the processor allows it; a batch that does
not fit in GPU memory is split in halves, and later batches use the size that fit.
`logprob` reads each batch's scores back one batch late, so the host queues the next batch while the GPU still
runs the current one; with compiled modules (mmft_evaluator.execution) the last batch is padded to the batch size
so every forward pass has the same shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .answers import parse_answer
from .examples import Example
from .image_features import ImageFeatureStore, prefix_forward

ProgressCallback = Callable[[int, int], None]


@dataclass
class Scored:
    example: Example
    score: float | None = None
    answer: str | None = None
    parsed: int | None = None


class PromptCollator:
    """Turns a list of examples into one padded model batch (runs inside DataLoader workers).

    With ``defer_normalization`` the image processor stops after resizing and the batch carries uint8 pixels,
    which ``DevicePixelNormalizer`` rescales and normalises on the GPU: the processor's float work was most of
    each worker's time per image, and uint8 pixels are a quarter of float32's bytes (half of bf16's) through
    shared memory and the host-to-GPU copy."""

    def __init__(self, processor, image_loader: Callable[[str], object], pixel_dtype=None,
                 defer_normalization: bool = False):
        self.processor = processor
        self.image_loader = image_loader
        # Casting pixels to the model's dtype in the worker halves the shared-memory and host-to-GPU traffic.
        self.pixel_dtype = pixel_dtype
        self.defer_normalization = defer_normalization

    def __call__(self, examples: Sequence[Example]):
        texts = [
            self.processor.apply_chat_template(list(example.prompt), add_generation_prompt=True, tokenize=False)
            for example in examples
        ]
        images = [[self.image_loader(example.image)] for example in examples]
        deferred = {"do_rescale": False, "do_normalize": False} if self.defer_normalization else {}
        batch = self.processor(text=texts, images=images, padding=True, return_tensors="pt", **deferred)
        if self.pixel_dtype is not None and batch["pixel_values"].is_floating_point():
            batch["pixel_values"] = batch["pixel_values"].to(self.pixel_dtype)
        return list(examples), dict(batch)


class DevicePixelNormalizer:
    """Rescales and normalises a batch's uint8 pixels on its device with the image processor's own
    ``rescale_and_normalize``, then casts them to the model's dtype.

    Only used for a processor where that gives exactly the pixels of the processor's own full pass (checked on
    one image by ``for_processor``): a processor that does more after normalising, or ignores the deferral,
    keeps normalising in the workers."""

    def __init__(self, image_processor, dtype):
        self.image_processor = image_processor
        self.dtype = dtype

    @classmethod
    def for_processor(cls, processor, image_loader: Callable[[str], object], example: Example, dtype):
        """A normalizer if deferring normalisation reproduces the processor's pixels for ``example``, else None."""
        import torch

        image_processor = getattr(processor, "image_processor", None)
        if not hasattr(image_processor, "rescale_and_normalize"):
            return None
        _, full = PromptCollator(processor, image_loader)([example])
        _, deferred = PromptCollator(processor, image_loader, defer_normalization=True)([example])
        if deferred["pixel_values"].dtype != torch.uint8:
            return None
        finished = cls(image_processor, full["pixel_values"].dtype)(deferred)
        if not torch.equal(finished["pixel_values"], full["pixel_values"]):
            return None
        return cls(image_processor, dtype)

    def __call__(self, batch: dict) -> dict:
        import torch

        pixels = batch["pixel_values"]
        if pixels.dtype != torch.uint8:
            return batch
        processor = self.image_processor
        normalized = processor.rescale_and_normalize(pixels, processor.do_rescale, processor.rescale_factor,
                                                     processor.do_normalize, processor.image_mean,
                                                     processor.image_std)
        return {**batch, "pixel_values": normalized.to(self.dtype)}


def input_pipeline(processor, image_loader: Callable[[str], object], examples: Sequence[Example], dtype):
    """(collator, normalizer) for scoring ``examples``: normalisation on the device where that is exact."""
    normalizer = (DevicePixelNormalizer.for_processor(processor, image_loader, examples[0], dtype)
                  if examples else None)
    return PromptCollator(processor, image_loader, dtype, defer_normalization=normalizer is not None), normalizer


def pil_loader(cache_dir):
    def load(reference: str):
        from mmft_storage.gcs import fetch_file
        from PIL import Image

        with Image.open(fetch_file(reference, cache_dir)) as image:
            return image.convert("RGB")

    return load


def answer_token_ids(tokenizer, positive_answer: str, negative_answer: str) -> tuple[int, int]:
    positive = tokenizer.encode(positive_answer, add_special_tokens=False)
    negative = tokenizer.encode(negative_answer, add_special_tokens=False)
    if not positive or not negative or positive[0] == negative[0]:
        raise ValueError(
            f"the positive answer {positive_answer!r} and negative answer {negative_answer!r} must start with "
            "different tokens for logprob scoring"
        )
    return positive[0], negative[0]


def worker_slice_size(batch_size: int, workers: int) -> int:
    """Images each worker prepares at a time: the largest divisor of the GPU batch that is at most its share.

    A worker that prepared a whole GPU batch alone would delay the first batch by batch x (one image's
    preprocessing), seconds at 896 px; slices let all workers fill the first batch together, and a divisor keeps
    GPU batches exactly ``batch_size`` images."""
    if workers <= 1:
        return batch_size
    share = -(-batch_size // workers)
    return max(size for size in range(1, share + 1) if batch_size % size == 0)


def device_batches(examples, collator, batch_size: int, workers: int, device, dtype, pad_token_id: int,
                   pad_to_batch: bool = False, normalizer: DevicePixelNormalizer | None = None):
    """Yields (examples, batch on the device) of ``batch_size`` examples; the last one is smaller, or with
    ``pad_to_batch`` repeats its last row up to ``batch_size`` rows (more rows than examples). ``normalizer``
    finishes deferred pixel normalisation once per joined batch."""
    finish = normalizer or (lambda batch: batch)
    from torch.utils.data import DataLoader

    loader = DataLoader(
        list(examples),
        batch_size=worker_slice_size(batch_size, workers),
        shuffle=False,
        collate_fn=collator,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        worker_init_fn=_single_threaded_worker,
    )
    pending: list[tuple[list, dict]] = []
    for chunk, batch in loader:
        # Copy each pinned slice as it arrives; slices are joined on the device.
        pending.append((chunk, _to_device(batch, device, dtype)))
        if sum(len(chunk) for chunk, _ in pending) >= batch_size:
            chunk, batch = _join(pending, pad_token_id)
            yield chunk, finish(batch)
            pending = []
    if pending:
        chunk, batch = _join(pending, pad_token_id)
        yield chunk, finish(_pad_rows(batch, batch_size) if pad_to_batch else batch)


def _pad_rows(batch: dict, rows: int) -> dict:
    """Repeats the last row until the batch has ``rows`` rows; callers drop the repeated rows' outputs."""
    import torch

    missing = rows - batch["input_ids"].shape[0]
    if missing <= 0:
        return batch
    return {key: torch.cat([value, value[-1:].expand(missing, *value.shape[1:])]) for key, value in batch.items()}


def _join(slices: list[tuple[list, dict]], pad_token_id: int) -> tuple[list, dict]:
    """Concatenates slices, left-padding token tensors to the longest slice (the answer stays in the last column)."""
    import torch
    import torch.nn.functional as functional

    if len(slices) == 1:
        return slices[0]
    length = max(batch["input_ids"].shape[1] for _, batch in slices)
    joined = {}
    for key in slices[0][1]:
        parts = []
        for _, batch in slices:
            value = batch[key]
            if value.dim() == 2 and value.shape[1] == batch["input_ids"].shape[1]:
                fill = pad_token_id if key == "input_ids" else 0
                value = functional.pad(value, (length - value.shape[1], 0), value=fill)
            parts.append(value)
        joined[key] = torch.cat(parts)
    return [example for chunk, _ in slices for example in chunk], joined


def _single_threaded_worker(_worker_id: int) -> None:
    import torch

    # Each worker preprocesses whole slices; intra-op threads in every worker would oversubscribe the CPUs.
    torch.set_num_threads(1)


def _to_device(batch, device, dtype):
    moved = {}
    for key, value in batch.items():
        value = value.to(device, non_blocking=True)
        moved[key] = value.to(dtype) if value.is_floating_point() else value
    return moved


def _slice(batch: dict, start: int, stop: int) -> dict:
    return {key: value[start:stop] for key, value in batch.items()}


class _MemoryAdaptiveRunner:
    """Runs ``step(batch)`` on chunks no larger than the biggest size that has fit in GPU memory so far."""

    def __init__(self, step):
        self.step = step
        self.chunk: int | None = None

    def __call__(self, batch: dict, size: int, rows: list | None = None) -> list:
        """The step's results of each chunk, in order; with ``rows`` (one entry per batch row), the step also gets
        its chunk's rows."""
        import torch

        chunk = min(size, self.chunk or size)
        while True:
            try:
                results = []
                for start in range(0, size, chunk):
                    stop = min(start + chunk, size)
                    part = _slice(batch, start, stop)
                    results.append(self.step(part) if rows is None else self.step(part, rows[start:stop]))
                self.chunk = chunk
                return results
            except torch.cuda.OutOfMemoryError:
                if chunk == 1:
                    raise
                torch.cuda.empty_cache()
                chunk = max(1, chunk // 2)


def _model_dtype(model):
    return next(model.parameters()).dtype


def score_logprob(loaded, examples, positive_answer, negative_answer, batch_size, workers, image_loader,
                  on_progress: ProgressCallback | None = None, pad_to_batch: bool = False,
                  features: ImageFeatureStore | None = None) -> list[Scored]:
    """score = P(positive | positive or negative first answer token) = sigmoid(logit_pos - logit_neg).

    ``pad_to_batch``: every forward pass gets exactly ``batch_size`` rows (for compiled, shape-specialised
    modules); the padding rows' scores are dropped. ``features``: image features shared with other models
    (``ImageFeatureStore``)."""
    import torch

    positive_id, negative_id = answer_token_ids(loaded.processor.tokenizer, positive_answer, negative_answer)
    model = loaded.model

    def step(batch, rows):
        # logits_to_keep=1: only the last position's logits, not a (batch x sequence x 262k vocab) tensor;
        # use_cache=False: one pass, no key/value cache to build.
        output = prefix_forward(model, batch, features, rows, logits_to_keep=1, use_cache=False)
        logits = output.logits[:, -1, :].float()
        return torch.sigmoid(logits[:, positive_id] - logits[:, negative_id])

    return _score_batches(loaded, examples, step, batch_size, workers, image_loader, on_progress, pad_to_batch)


def answer_continuations(processor, example: Example, positive_answer: str, negative_answer: str):
    """Token ids of each answer as the model would produce it after ``example``'s prompt: the prompt and the answer
    tokenised together, minus the prompt's tokens (where the tokenizer merges across the boundary, the answer
    tokenised alone)."""
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(list(example.prompt), add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    continuations = []
    for answer in (positive_answer, negative_answer):
        joint = tokenizer.encode(prompt + answer, add_special_tokens=False)
        ids = joint[len(prompt_ids):] if joint[: len(prompt_ids)] == prompt_ids else []
        continuations.append(ids or tokenizer.encode(answer, add_special_tokens=False))
    if not all(continuations) or continuations[0] == continuations[1]:
        raise ValueError(f"the positive answer {positive_answer!r} and negative answer {negative_answer!r} must be "
                         "non-empty and tokenise differently for forced-choice scoring")
    return continuations


def score_forced_choice(loaded, examples, positive_answer, negative_answer, batch_size, workers, image_loader,
                        on_progress: ProgressCallback | None = None, pad_to_batch: bool = False,
                        features: ImageFeatureStore | None = None) -> list[Scored]:
    """score = P(positive answer | the prompt, one of the two answers) = sigmoid(log P(positive answer | prompt) -
    log P(negative answer | prompt)), each answer's log-likelihood summed over all of its tokens.

    A model that explains before it answers puts little mass on either answer's first token, so ``logprob`` reads
    its call from a token it did not mean as its answer; the whole answer's likelihood also counts the tokens where
    the two answers say different things. The prompt (image included) runs once with a key/value cache; the cache
    is repeated for the two answers, which then run as one batch of 2 x rows."""
    import torch

    if not examples:
        return []
    model, device = loaded.model, loaded.device
    continuations = answer_continuations(loaded.processor, examples[0], positive_answer, negative_answer)
    length = max(len(ids) for ids in continuations)
    pad = loaded.processor.tokenizer.pad_token_id or 0
    # (2, length): the positive then the negative answer, right-padded; the padding is masked and not counted.
    answers = torch.tensor([ids + [pad] * (length - len(ids)) for ids in continuations], device=device)
    answer_mask = torch.tensor([[1] * len(ids) + [0] * (length - len(ids)) for ids in continuations], device=device)

    def step(batch, rows):
        size = batch["input_ids"].shape[0]
        prefix = prefix_forward(model, batch, features, rows, logits_to_keep=1, use_cache=True)
        # The first answer token is predicted by the prompt's last position.
        first = prefix.logits[:, -1, :].float().log_softmax(-1)
        log_likelihood = first[:, answers[:, 0]]  # (size, 2)
        if length > 1:
            cache = prefix.past_key_values
            cache.batch_repeat_interleave(2)  # rows r0, r0, r1, r1, ...: each row's prompt for both answers
            tokens = answers.repeat(size, 1)  # (2 size, length): positive, negative, positive, ...
            mask = torch.cat([batch["attention_mask"].repeat_interleave(2, 0), answer_mask.repeat(size, 1)], dim=1)
            logits = model(input_ids=tokens[:, :-1], attention_mask=mask[:, :-1], past_key_values=cache,
                           use_cache=True).logits.float()
            targets = tokens[:, 1:]
            token_log_likelihood = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            later = (token_log_likelihood * answer_mask[:, 1:].repeat(size, 1)).sum(-1).view(size, 2)
            log_likelihood = log_likelihood + later
        # float64: whole-answer likelihoods differ by tens of nats, where a float32 sigmoid ties at 1.0.
        return torch.sigmoid((log_likelihood[:, 0] - log_likelihood[:, 1]).double())

    return _score_batches(loaded, examples, step, batch_size, workers, image_loader, on_progress, pad_to_batch)


def _score_batches(loaded, examples, step, batch_size, workers, image_loader, on_progress, pad_to_batch):
    """Runs ``step(batch, rows)`` -> one score per row over ``examples`` in batches, reading scores back one batch
    late (``_ScoresInFlight``)."""
    import torch

    device, dtype = loaded.device, _model_dtype(loaded.model)
    runner = _MemoryAdaptiveRunner(step)
    scored: list[Scored] = []
    collator, normalizer = input_pipeline(loaded.processor, image_loader, examples, dtype)
    in_flight: _ScoresInFlight | None = None

    def finish(batch_scores: _ScoresInFlight) -> None:
        scored.extend(Scored(example=e, score=s) for e, s in batch_scores.result())
        if on_progress:
            on_progress(len(scored), len(examples))

    with torch.inference_mode():
        pad = loaded.processor.tokenizer.pad_token_id
        for chunk, batch in device_batches(examples, collator, batch_size, workers, device, dtype, pad,
                                           pad_to_batch, normalizer):
            size = batch["input_ids"].shape[0]
            rows = [example.image for example in chunk] + [chunk[-1].image] * (size - len(chunk))
            scores = torch.cat(runner(batch, size, rows))[: len(chunk)]
            launched = _ScoresInFlight(chunk, scores)
            if in_flight is not None:
                finish(in_flight)
            in_flight = launched
        if in_flight is not None:
            finish(in_flight)
    return scored


class _ScoresInFlight:
    """One batch's scores on their way to the host: the copy is queued behind the batch's forward pass and
    waited for only once the next batch has been fetched and queued, so the GPU does not wait for the host's
    batch hand-over (transformers' image-token check still syncs once per pass, after the vision tower)."""

    def __init__(self, chunk: list, scores):
        import torch

        self.chunk = chunk
        self.done = None
        if scores.device.type == "cuda":
            self.host = torch.empty(scores.shape, dtype=scores.dtype, pin_memory=True)
            self.host.copy_(scores, non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record()
        else:
            self.host = scores

    def result(self) -> list[tuple]:
        if self.done is not None:
            self.done.synchronize()
        return list(zip(self.chunk, self.host.tolist(), strict=True))


def generate_answers(loaded, examples, positive_answer, negative_answer, batch_size, workers, image_loader,
                     max_new_tokens: int, min_new_tokens: int = 0,
                     on_progress: ProgressCallback | None = None, static_cache: bool = False) -> list[Scored]:
    """Greedy generation of the seed's free-text answer, batched, parsed into a call (None: unparseable).

    ``static_cache``: a key/value cache preallocated for prompt + ``max_new_tokens`` (transformers then compiles
    the decoding step once and replays it as a CUDA graph); every prompt of a run has the same length, so one
    graph serves every batch."""
    import torch

    model, device, dtype = loaded.model, loaded.device, _model_dtype(loaded.model)
    tokenizer = loaded.processor.tokenizer
    cache = {"cache_implementation": "static"} if static_cache else {}

    def step(batch):
        prompt_length = batch["input_ids"].shape[1]
        output = model.generate(**batch, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
                                do_sample=False, pad_token_id=tokenizer.pad_token_id, **cache)
        return tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)

    runner = _MemoryAdaptiveRunner(step)
    scored: list[Scored] = []
    collator, normalizer = input_pipeline(loaded.processor, image_loader, examples, dtype)
    with torch.inference_mode():
        for chunk, batch in device_batches(examples, collator, batch_size, workers, device, dtype,
                                           tokenizer.pad_token_id, normalizer=normalizer):
            answers = [answer for part in runner(batch, len(chunk)) for answer in part]
            scored.extend(
                Scored(example=e, answer=a.strip(), parsed=parse_answer(a, positive_answer, negative_answer))
                for e, a in zip(chunk, answers, strict=True)
            )
            if on_progress:
                on_progress(len(scored), len(examples))
    return scored


class ProgressLine:
    """Prints 'name: done/total images, rate, eta' at most every ``interval`` seconds, and calls ``publish``."""

    def __init__(self, label: str, publish: Callable[[int, int, float, float | None], None] | None = None,
                 interval: float = 5.0, stream=None, clock=time.monotonic):
        import sys

        self.label, self.publish, self.interval = label, publish, interval
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.last_print: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else None
        if self.publish:
            self.publish(done, total, rate, eta)
        if done < total and self.last_print is not None and now - self.last_print < self.interval:
            return
        self.last_print = now
        eta_text = f", eta {eta:.0f}s" if eta is not None and done < total else ""
        print(f"{self.label}: {done}/{total} images ({rate:.2f} images/s{eta_text})", file=self.stream, flush=True)
