"""The trainer's exit watchdog ends a finished `mmft train` process that is stuck joining a leftover thread, and
leaves alone a process that called it in-process and carries on (a test session: pytest itself)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.ml


def test_the_watchdog_leaves_a_process_whose_main_thread_goes_on_alone():
    from mmft_trainer.runner import exit_if_interpreter_is_exiting

    exits = []
    assert exit_if_interpreter_is_exiting(0, exit=exits.append) is False
    assert exits == []


def test_a_finished_run_exits_although_a_non_daemon_thread_would_keep_it_alive():
    script = textwrap.dedent("""
        import threading, time
        from mmft_trainer import runner
        runner.EXIT_GRACE_SECONDS = 0.5
        threading.Thread(target=time.sleep, args=(600,)).start()  # a library's leftover, non-daemon
        runner._arm_exit_watchdog(3)
    """)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert result.returncode == 3
    assert time.monotonic() - started < 30
