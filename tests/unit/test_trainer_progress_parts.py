"""Pieces of the trainer's progress report that need no model: token rate, and naming a GPU out-of-memory error."""

from __future__ import annotations

from mmft_operator.contracts.exit_codes import describes_gpu_out_of_memory, is_gpu_out_of_memory
from mmft_trainer.reporting import TokenRate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_rate_between_two_totals():
    clock = Clock()
    rate = TokenRate(clock)
    assert rate.measure(4480) is None, "the first total only starts the count"
    clock.now += 2.0
    assert rate.measure(4480 + 8960) == 4480.0
    clock.now += 1.0
    assert rate.measure(100) is None, "a total that went down (a resumed run counting afresh) is no rate"


class OutOfMemoryError(RuntimeError):
    """Named as torch's, in torch's module: what the check reads, without importing torch here."""


OutOfMemoryError.__module__ = "torch"


def test_a_cuda_out_of_memory_error_is_recognised_by_type_text_or_cause():
    assert is_gpu_out_of_memory(OutOfMemoryError("allocation failed"))
    assert is_gpu_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    try:
        try:
            raise OutOfMemoryError("allocation failed")
        except OutOfMemoryError as cause:
            raise ValueError("the training step failed") from cause
    except ValueError as wrapped:
        assert is_gpu_out_of_memory(wrapped)
    assert not is_gpu_out_of_memory(MemoryError("host memory"))
    assert not is_gpu_out_of_memory(ValueError("out of range"))
    assert describes_gpu_out_of_memory("OutOfMemoryError: CUDA out of memory. Tried to allocate 1 GiB")
