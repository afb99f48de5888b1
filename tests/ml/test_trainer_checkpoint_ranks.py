"""The completeness marker of a multi-rank checkpoint: two real ranks (torch.distributed, gloo, two processes)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.ml

SLOW_RANK_SECONDS = 1.5
STEP = 20


def _ranks(rank: int, port: int, output_dir: str) -> None:
    import torch.distributed as dist
    from mmft_trainer.callback import MmftCallback, same_on_every_rank
    from mmft_trainer.checkpoints import COMPLETE_MARKER, is_complete, newest_complete
    from mmft_trainer.preemption import PreemptionGuard
    from mmft_trainer.reporting import RunReporter

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        checkpoint = Path(output_dir) / f"checkpoint-{STEP}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        callback = MmftCallback(RunReporter(None), PreemptionGuard(), time.monotonic())
        args = SimpleNamespace(output_dir=output_dir, device=torch.device("cpu"))
        state = SimpleNamespace(global_step=STEP, is_world_process_zero=rank == 0)
        if rank == 1:
            time.sleep(SLOW_RANK_SECONDS)  # this rank's part (its RNG state, its shards) is still being written
        (checkpoint / f"rng_state_{rank}.pth").write_bytes(b"state of rank %d" % rank)
        callback.on_save(args, state, None)
        if rank == 0:
            assert (checkpoint / "rng_state_1.pth").is_file(), "marked complete before the slow rank saved its part"
            assert is_complete(checkpoint)
            marked = (checkpoint / COMPLETE_MARKER).stat().st_mtime_ns
            assert marked >= (checkpoint / "rng_state_1.pth").stat().st_mtime_ns
        dist.barrier()
        assert newest_complete(Path(output_dir)) == checkpoint

        assert same_on_every_rank(STEP, torch.device("cpu"))
        resumed = SimpleNamespace(global_step=STEP if rank == 0 else STEP - 10, max_steps=100, epoch=0.0)
        with pytest.raises(RuntimeError, match="resumed from different checkpoints"):
            callback.on_train_begin(args, resumed, None)
    finally:
        dist.destroy_process_group()


def test_the_marker_waits_for_every_rank_and_ranks_must_resume_from_one_step(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_ranks, args=(port, str(tmp_path / "run")), nprocs=2, join=True)
