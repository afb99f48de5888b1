"""Image features computed once per image and reused by every model of an Evaluation that has the same vision tower
and projector weights.

A base model and its LoRA adapters that leave the vision tower and projector alone (the usual fine-tune of the
language model) turn an image into the same features; on Gemma 3 the vision tower is most of the work per image
(docs/bench-evaluator.md). The first such model stores each image's projected features (the vision tower's output
through the multimodal projector, what replaces the prompt's image tokens); the next ones take them from the store
and run only their language model. ``sharing_key`` (mmft_evaluator.loading) decides which models may share.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Module names that transformers' image-text models give their vision encoder and projector.
VISION_MODULE_NAMES = frozenset({"vision_tower", "vision_model", "visual", "multi_modal_projector"})
# Features stay on the GPU while at least this share of its memory stays free after them; beyond that they move to
# host memory (a copy back per batch: slower, still far cheaper than the vision tower).
MIN_FREE_GPU_SHARE = 0.3


class ImageFeatureStore:
    """Projected image features by image reference, for the models of one sharing key."""

    def __init__(self, key: str):
        self.key = key
        self._rows: dict[str, tuple[object, int]] = {}
        self.on_host = 0  # images whose features had to go to host memory

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, images: list[str], device):
        """The features of ``images`` in order, on ``device``; None unless every image has them."""
        import torch

        located = [self._rows.get(image) for image in images]
        if not images or any(location is None for location in located):
            return None
        tensor, first = located[0]
        if all(t is tensor and row == first + offset for offset, (t, row) in enumerate(located)):
            features = tensor[first:first + len(images)]  # a whole stored batch: a view, no copy
        else:
            features = torch.stack([t[row] for t, row in located])
        return features.to(device, non_blocking=True)

    def put(self, images: list[str], features) -> None:
        import torch

        kept = features.detach()
        if kept.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(kept.device)
            if free < MIN_FREE_GPU_SHARE * total:
                kept = kept.to("cpu")
                self.on_host += len(images)
        for row, image in enumerate(images):
            self._rows.setdefault(image, (kept, row))


def image_features(model, pixel_values):
    """The projected features a Gemma 3-style model puts in place of its image tokens."""
    output = model.model.get_image_features(pixel_values, return_dict=True)
    return getattr(output, "pooler_output", output)


def embeddings_with_features(model, input_ids, features):
    """The language model's input embeddings with ``features`` in the image tokens' places, as the model's own
    forward builds them from pixels."""
    config = model.config
    image_mask = input_ids == config.image_token_id
    ids = input_ids
    if config.image_token_id >= model.get_input_embeddings().num_embeddings:
        ids = input_ids.masked_fill(image_mask, 0)  # an out-of-vocabulary image token, replaced as the model does
    embeds = model.get_input_embeddings()(ids)
    return embeds.masked_scatter(image_mask.unsqueeze(-1).expand_as(embeds), features.to(embeds.dtype))


def prefix_forward(model, batch: dict, store: ImageFeatureStore | None, rows: list[str], **kwargs):
    """``model(**batch, **kwargs)``; with a store, the images' features come from it when it has them all (their
    pixels are not used), and are computed and stored otherwise."""
    if store is None:
        return model(**batch, **kwargs)
    features = store.get(rows, batch["input_ids"].device)
    if features is None:
        features = image_features(model, batch["pixel_values"])
        store.put(rows, features)
    rest = {key: value for key, value in batch.items() if key not in ("input_ids", "pixel_values")}
    return model(inputs_embeds=embeddings_with_features(model, batch["input_ids"], features), **rest, **kwargs)
