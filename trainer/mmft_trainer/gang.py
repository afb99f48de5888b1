"""``python -m mmft_trainer.gang TORCHRUN-ARGS``: torchrun, with an exit code the Job's podFailurePolicy can act on.

A multi-node run is a gang: every rank takes part in every collective, so a rank whose peer was lost can only stop
and start again with the others, from the newest complete checkpoint. torchrun exits 1 whatever happened; this
launcher runs torchrun in-process and exits with

* :data:`~mmft_operator.contracts.exit_codes.GANG_RESTART` when this rank stopped because of another rank: the
  workers stopped at a preemption they all agreed on (exit 143), or the rendezvous store went away with the index-0
  pod that hosts it. The Job replaces the pod without spending a retry (podFailurePolicy ``Ignore``), so a
  preemption never fails a run that has retries left;
* a worker's own deterministic exit code (config or data invalid, GPU out of memory), which the podFailurePolicy
  fails the Job on at once;
* 1 for any other failure, which spends a retry (backoffLimit).

A rank lost while the index-0 pod stays up needs no code here: its replacement joins the rendezvous again, and
torchrun's agents restart their workers on that membership change (it does not count against --max-restarts).
"""

from __future__ import annotations

import sys

from mmft_operator.contracts.exit_codes import FAIL_AT_ONCE, GANG_RESTART

from .preemption import PREEMPTED_EXIT_CODE

# Worker exit codes that say "stopped for the gang": the agreed save-and-stop after a preemption, or a worker that
# itself reported a lost peer.
_STOPPED_FOR_THE_GANG = frozenset({PREEMPTED_EXIT_CODE, GANG_RESTART})
OTHER_FAILURE = 1


def exit_code_for_workers(exit_codes: list[int]) -> int:
    """The pod's exit code for the failed workers' exit codes (negative: killed by that signal)."""
    for code in exit_codes:
        if code in FAIL_AT_ONCE:
            return code
    if exit_codes and all(code in _STOPPED_FOR_THE_GANG for code in exit_codes):
        return GANG_RESTART
    return OTHER_FAILURE


def main(argv: list[str] | None = None) -> int:
    from torch.distributed import DistNetworkError, DistStoreError
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError

    try:
        torchrun.main(argv)
    except ChildFailedError as failed:
        codes = [failure.exitcode for failure in failed.failures.values()]
        code = exit_code_for_workers(codes)
        print(f"mmft gang: workers exited {sorted(codes)}: exiting {code}", file=sys.stderr)
        return code
    except (RendezvousError, DistNetworkError, DistStoreError) as lost:
        # The store lives in the index-0 pod's agent: losing it means that pod is gone, not that this rank failed.
        print(f"mmft gang: rendezvous lost ({type(lost).__name__}: {lost}): exiting {GANG_RESTART} so that the "
              "whole gang starts again", file=sys.stderr)
        return GANG_RESTART
    except SignalException as signalled:
        # The pod itself is being stopped (preemption, deletion): exit as the signal would have ended it.
        return 128 + int(signalled.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
