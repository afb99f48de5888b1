"""Run frozen encoder towers (the vision tower, the projector) without autograd.

PEFT and Axolotl call ``enable_input_require_grads``, which in transformers 5 hooks the input embeddings of every
sub-model, the SigLIP patch embedding included. From then on autograd records the whole frozen vision tower and the
backward pass computes gradients through it that nothing uses: on an H200 that backward was about half of a Gemma 3
training step (docs/bench-trainer.md). No trainable parameter lives in a tower whose parameters are all frozen and
whose input is pixels, so running it under ``torch.no_grad`` changes no gradient.
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

# Attribute names multimodal models in transformers give their encoder towers and projectors.
TOWER_NAMES = frozenset({"vision_tower", "vision_model", "visual", "multi_modal_projector", "audio_tower"})


def frozen_towers(model) -> list[str]:
    """Dotted names of the tower modules of ``model`` with no trainable parameter (outermost matches only)."""
    names = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in TOWER_NAMES or any(name.startswith(f"{outer}.") for outer in names):
            continue
        if not any(parameter.requires_grad for parameter in module.parameters()):
            names.append(name)
    return names


def run_frozen_towers_without_grad(model) -> list[str]:
    """Wrap each frozen tower's forward in ``torch.no_grad``; returns the names wrapped."""
    import torch

    wrapped = []
    modules = dict(model.named_modules())
    for name in frozen_towers(model):
        module = modules[name]
        if getattr(module.forward, "mmft_without_grad", False):
            continue
        forward = module.forward

        @functools.wraps(forward)
        def without_grad(*args, _forward=forward, **kwargs):
            with torch.no_grad():
                return _forward(*args, **kwargs)

        without_grad.mmft_without_grad = True
        module.forward = without_grad
        wrapped.append(name)
    if wrapped:
        # A warning, as other changes mmft makes to a run: Axolotl sets the root logger to WARNING.
        log.warning("mmft: frozen towers run without autograd: %s", ", ".join(wrapped))
    return wrapped
