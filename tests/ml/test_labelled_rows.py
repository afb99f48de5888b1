"""The labelled-rows loss wrapper: same loss and gradients as the full-sequence loss, over fewer rows.

Liger's fused kernel needs a GPU, so a plain cross-entropy with Liger's calling convention stands in for it here; the
wrapper's job (choosing rows, shifting labels) is what is tested. The GPU benchmark compares the real losses.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mmft_trainer.labelled_rows import IGNORE_INDEX, install, labelled_rows_only  # noqa: E402

pytestmark = pytest.mark.ml


def reference_loss(hidden_states, lm_head_weight, labels, hidden_size, num_items_in_batch=None, ignore_index=-100,
                   shift_labels=None, **_):
    """Liger's LigerForCausalLMLoss semantics with plain torch: shift, flatten, mean over labelled positions."""
    if shift_labels is None:
        shift_labels = torch.nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]
    logits = hidden_states.reshape(-1, hidden_size).float() @ lm_head_weight.float().T
    reduction = "sum" if num_items_in_batch is not None else "mean"
    loss = torch.nn.functional.cross_entropy(
        logits, shift_labels.reshape(-1), ignore_index=ignore_index, reduction=reduction
    )
    rows_seen.append(logits.shape[0])
    return loss / num_items_in_batch if num_items_in_batch is not None else loss


rows_seen: list[int] = []


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 20, 16, generator=generator, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, requires_grad=True)
    labels = torch.full((3, 20), IGNORE_INDEX)
    labels[0, 15:18] = torch.tensor([4, 9, 1])  # an answer of three tokens, as in a chat_template sample
    labels[2, 10:20] = torch.randint(0, 50, (10,), generator=generator)
    return hidden, weight, labels


@pytest.mark.parametrize("num_items_in_batch", [None, 13])
def test_loss_and_gradients_match_the_full_sequence(num_items_in_batch) -> None:
    hidden, weight, labels = batch()
    full = reference_loss(hidden, weight, labels, 16, num_items_in_batch=num_items_in_batch)
    full_grads = torch.autograd.grad(full, (hidden, weight))

    rows_seen.clear()
    trimmed = labelled_rows_only(reference_loss)(hidden, weight, labels, 16, num_items_in_batch=num_items_in_batch)
    trimmed_grads = torch.autograd.grad(trimmed, (hidden, weight))

    # Shifted labels: positions 14-16 of sample 0 and 9-18 of sample 2 predict a label, 13 rows instead of 60.
    assert rows_seen == [13]
    torch.testing.assert_close(trimmed, full)
    for got, expected in zip(trimmed_grads, full_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_explicit_shift_labels_are_used_as_given() -> None:
    hidden, weight, labels = batch(1)
    shift_labels = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    full = reference_loss(hidden, weight, None, 16, shift_labels=shift_labels)
    trimmed = labelled_rows_only(reference_loss)(hidden, weight, None, 16, shift_labels=shift_labels)
    torch.testing.assert_close(trimmed, full)


def test_a_batch_without_labels_goes_through_untouched() -> None:
    hidden, weight, _ = batch(2)
    rows_seen.clear()
    labelled_rows_only(reference_loss)(hidden, weight, torch.full((3, 20), IGNORE_INDEX), 16)
    assert rows_seen == [60]


def test_install_patches_liger_gemma3_once() -> None:
    gemma3 = pytest.importorskip("liger_kernel.transformers.model.gemma3")
    original = gemma3.LigerForCausalLMLoss
    try:
        install()
        patched = gemma3.LigerForCausalLMLoss
        assert getattr(patched, "mmft_labelled_rows_only", False)
        install()
        assert gemma3.LigerForCausalLMLoss is patched  # a second install does not wrap twice
    finally:
        gemma3.LigerForCausalLMLoss = original
