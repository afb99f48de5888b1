"""The SIGTERM handler takes no lock: it cannot wait for a lock its own thread holds (a preempted run once hung in
``log.warning`` inside the handler while the main thread was writing a log line through Axolotl's stream tee).

Each case runs in its own process (``process_groups`` kills it however the test ends): a handler that blocks hangs
that process, and the time limit turns the hang into a failure instead of a stuck test session.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

HANG_LIMIT_SECONDS = 60  # catches a hang; the process itself needs well under a second

# The main thread holds a plain (non-reentrant) lock, as Axolotl's tee does while it writes, and a logging handler
# needs that lock: any logging from the signal handler would wait for ever.
HOLDS_THE_WRITE_LOCK = textwrap.dedent("""
    import logging, os, signal, sys, threading
    from mmft_trainer.preemption import PreemptionGuard

    write_lock = threading.Lock()

    class TeeLikeHandler(logging.Handler):
        def emit(self, record):
            with write_lock:
                sys.stdout.write(self.format(record) + "\\n")

    logging.getLogger().addHandler(TeeLikeHandler())
    guard = PreemptionGuard()
    guard.install()
    guard.training = {training}
    with write_lock:
        for _ in range({signals}):
            os.kill(os.getpid(), signal.SIGTERM)
    print("after the signals: requested", guard.requested, flush=True)
""")


def _run(process_groups, training: bool, signals: int = 1) -> tuple[int, str, str]:
    script = HOLDS_THE_WRITE_LOCK.format(training=training, signals=signals)
    process = process_groups.start([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    try:
        stdout, stderr = process.communicate(timeout=HANG_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the SIGTERM handler blocked: the process still ran after {HANG_LIMIT_SECONDS} s")
    return process.returncode, stdout, stderr


def test_during_training_sigterm_only_raises_the_flag_even_while_the_write_lock_is_held(process_groups):
    returncode, stdout, stderr = _run(process_groups, training=True, signals=50)
    assert returncode == 0, stderr
    assert "after the signals: requested True" in stdout
    assert "mmft: SIGTERM received: saving a checkpoint at the end of this step" in stderr


def test_before_training_sigterm_ends_the_process_at_once_as_sigterm_does(process_groups):
    returncode, stdout, stderr = _run(process_groups, training=False)
    assert returncode == -signal.SIGTERM, (stdout, stderr)
    assert "after the signals" not in stdout
    assert "SIGTERM received before training started: nothing to save, exiting" in stderr
