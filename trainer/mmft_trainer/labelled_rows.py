"""Language-model head over the labelled positions only, under Liger's fused linear cross-entropy.

In a chat_template sample only the assistant's answer carries labels: for the seed's data about 8 of 280 positions.
Liger's fused loss still multiplies every position's hidden state by the 262k-row head (forward and backward), about
7% of a training step's work. The loss is a mean (or a sum over ``num_items_in_batch``) over labelled positions, so
dropping the ignored rows before the fused kernel changes nothing but the work: ignored rows contribute neither loss
nor gradient.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Liger modules that import LigerForCausalLMLoss by name; the multimodal Gemma 3 forward is the one mmft trains.
PATCHED_MODULES = ("liger_kernel.transformers.model.gemma3",)


def labelled_rows_only(loss_fn: Callable) -> Callable:
    """Wrap a Liger causal-LM loss so the fused kernel sees only positions whose shifted label is not ignored."""
    import torch
    from torch import nn

    @torch.compiler.disable  # the row count depends on the data; keep it out of compiled graphs
    def loss(hidden_states, lm_head_weight, labels, hidden_size, *args, shift_labels=None, **kwargs):
        def unchanged():
            return loss_fn(
                hidden_states, lm_head_weight, labels, hidden_size, *args, shift_labels=shift_labels, **kwargs
            )

        ignore_index = kwargs.get("ignore_index", IGNORE_INDEX)
        if kwargs.get("return_predicted_tokens"):  # per-position predictions need every row
            return unchanged()
        if shift_labels is None:
            shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
        shift_labels = shift_labels.reshape(-1).to(hidden_states.device)
        keep = shift_labels != ignore_index
        if not bool(keep.any()):  # nothing to learn from in this batch: let Liger handle it as it always did
            return unchanged()
        rows = hidden_states.reshape(-1, hidden_size)[keep]
        return loss_fn(rows, lm_head_weight, None, hidden_size, *args, shift_labels=shift_labels[keep], **kwargs)

    loss.mmft_labelled_rows_only = True
    return loss


def install() -> bool:
    """Patch the Liger modules mmft trains with; returns whether any was patched (Liger may not be installed)."""
    patched = False
    for name in PATCHED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        current = module.LigerForCausalLMLoss
        if not getattr(current, "mmft_labelled_rows_only", False):
            module.LigerForCausalLMLoss = labelled_rows_only(current)
            patched = True
    if patched:
        log.warning("mmft: Liger fused cross-entropy: the language-model head runs over labelled positions only")
    return patched
