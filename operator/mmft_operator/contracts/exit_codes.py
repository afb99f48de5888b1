"""Exit codes of the workloads (trainer, dataprep, evaluator) that the operator maps to condition reasons."""

from __future__ import annotations

# sysexits.h EX_CONFIG: the configuration is invalid; retrying cannot help, so the Job fails at once.
CONFIG_INVALID = 78
# sysexits.h EX_DATAERR: the input data is unusable (no rows, a split came out empty).
DATA_INVALID = 65
# mmft's own (outside sysexits.h's 64-78 and the shell's 126+): the GPU ran out of memory (a CUDA allocation failed;
# the container's memory limit is OOMKilled instead). The same config on the same card fails the same way again.
OUT_OF_MEMORY = 87

# sysexits.h EX_TEMPFAIL: this rank of a multi-node run stopped because another rank was lost (preempted, its node
# gone, the rendezvous host gone), not because of anything of its own; the Job replaces it without spending a retry
# and the whole gang starts again from the newest complete checkpoint.
GANG_RESTART = 75

# Deterministic failures: the Job's podFailurePolicy fails at once on these, spending no retry on a GPU.
FAIL_AT_ONCE = (DATA_INVALID, CONFIG_INVALID, OUT_OF_MEMORY)

_CUDA_OUT_OF_MEMORY_TEXT = "CUDA out of memory"


def is_gpu_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` or an exception it was raised from is a CUDA allocation failure
    (``torch.cuda.OutOfMemoryError``, or its text when a library re-raised it as another type).

    Read by name, so that this contract needs no torch."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "OutOfMemoryError" and type(current).__module__.startswith("torch"):
            return True
        if describes_gpu_out_of_memory(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


def describes_gpu_out_of_memory(text: str) -> bool:
    """Whether an error message (as a library or a per-model result recorded it) is PyTorch's CUDA OOM text."""
    return _CUDA_OUT_OF_MEMORY_TEXT in text
