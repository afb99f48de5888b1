"""The gang launcher (mmft_trainer.gang) running real torchrun agents and workers on this machine: the pod's exit code
for what the workers did, and for a lost rendezvous host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmft_operator.contracts.exit_codes import CONFIG_INVALID, GANG_RESTART
from mmft_trainer.gang import OTHER_FAILURE

pytest.importorskip("torch")
pytestmark = pytest.mark.ml

# A worker that exits with its rank's code, after sleeping MMFT_TEST_SLEEP seconds unless its agent goes away first
# (torchrun starts workers in their own session: a killed agent would leave them behind).
WORKER = """
import os, sys, time
codes = [int(code) for code in sys.argv[1].split(",")]
agent, until = os.getppid(), time.monotonic() + float(os.environ.get("MMFT_TEST_SLEEP", "0"))
while time.monotonic() < until and os.getppid() == agent:
    time.sleep(0.2)
sys.exit(codes[int(os.environ["RANK"])])
"""


def _launcher(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mmft_trainer.gang", *args],
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, output


@pytest.mark.parametrize(("codes", "expected"), [
    ("0,0", 0),
    ("143,143", GANG_RESTART),
    ("143,78", CONFIG_INVALID),
    ("0,3", OTHER_FAILURE),
])
def test_torchrun_workers_exit_codes_become_the_pods(tmp_path: Path, codes: str, expected: int):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    process = _launcher("--standalone", "--nproc-per-node=2", "--monitor-interval=0.1", str(worker), codes,
                        start_new_session=True)
    returncode, output = _finish(process)
    assert returncode == expected, output


def test_losing_the_rendezvous_host_makes_the_other_rank_ask_for_a_gang_restart(tmp_path: Path):
    """Two agents (two "nodes") rendezvous on this machine; the host of the store (index 0) is killed without
    notice, as a lost node is: the other agent stops its workers and exits GANG_RESTART instead of hanging."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    common = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
              "--rdzv-id=test", "--max-restarts=0", "--monitor-interval=0.1"]
    env = {"MMFT_TEST_SLEEP": "600"}
    host = _launcher(*common, "--node-rank=0", str(worker), "0,0", env=env, start_new_session=True)
    other = None
    try:
        time.sleep(1.0)  # the host binds the store first
        other = _launcher(*common, "--node-rank=1", str(worker), "0,0", env=env, start_new_session=True)
        # Both workers running means the rendezvous completed: wait for the worker processes to exist.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _worker_count(tmp_path) < 2:
            time.sleep(0.5)
        assert _worker_count(tmp_path) == 2, "the two agents never started their workers"
        os.killpg(host.pid, signal.SIGKILL)  # the index-0 pod's node is gone: agent, store and worker at once
        returncode, output = _finish(other, timeout=180)
        assert returncode == GANG_RESTART, output
        assert "rendezvous lost" in output
    finally:
        for process in (host, other):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pid in _workers(tmp_path):
            os.kill(pid, signal.SIGKILL)


def _worker_count(tmp_path: Path) -> int:
    return len(_workers(tmp_path))


def _workers(tmp_path: Path) -> list[int]:
    """Processes running this test's worker script (only this test starts them: the path is its own tmp_path)."""
    script = str(tmp_path / "worker.py")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if script.encode() in cmdline and b"-m" not in cmdline:
            pids.append(int(entry.name))
    return pids


# Records each start as starts/<rank>-<pid>, then waits for the file `finish` (or for its agent to go away).
RESTARTABLE_WORKER = """
import os, sys, time
from pathlib import Path
here = Path(__file__).parent
(here / "starts").mkdir(exist_ok=True)
(here / "starts" / f"{os.environ['RANK']}-{os.getpid()}").touch()
agent = os.getppid()
while not (here / "finish").exists() and os.getppid() == agent:
    time.sleep(0.2)
sys.exit(0)
"""


def test_a_lost_rank_whose_replacement_rejoins_leaves_no_rank_hanging_and_spends_no_retry(tmp_path: Path):
    """The node of index 1 is lost without notice and its replacement starts. The index-0 agent (host of the
    rendezvous) sees the replacement once the lost node misses its heartbeats and restarts its workers (torchrun's
    membership change). Either the new round runs to the end (exit 0) or, as seen with torch 2.13, the new round's
    store wait times out and both launchers exit GANG_RESTART, so the Job replaces both pods for free. Never a hang,
    never exit 1 (a spent retry)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = tmp_path / "worker.py"
    worker.write_text(RESTARTABLE_WORKER)
    common = ["--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
              "--rdzv-id=test", "--max-restarts=0", "--monitor-interval=0.1"]
    starts = tmp_path / "starts"

    def started(rank: int) -> int:
        return len(list(starts.glob(f"{rank}-*"))) if starts.is_dir() else 0

    host = _launcher(*common, "--node-rank=0", str(worker), start_new_session=True)
    processes = [host]
    try:
        time.sleep(1.0)
        processes.append(_launcher(*common, "--node-rank=1", str(worker), start_new_session=True))
        deadline = time.monotonic() + 180
        while not (started(0) == 1 and started(1) == 1):
            assert time.monotonic() < deadline, "the two ranks never started"
            time.sleep(0.3)
        os.killpg(processes[1].pid, signal.SIGKILL)  # index 1's node is gone
        processes[1].wait()
        replacement = _launcher(*common, "--node-rank=1", str(worker), start_new_session=True)
        processes.append(replacement)
        deadline = time.monotonic() + 300
        while host.poll() is None or replacement.poll() is None:
            assert time.monotonic() < deadline, "a rank hangs after its peer was replaced"
            if started(0) == 2 and started(1) == 2:
                (tmp_path / "finish").touch()  # the gang started again in place: let it finish
            time.sleep(0.3)
        results = [_finish(process) for process in (host, replacement)]
        assert {code for code, _ in results} in ({0}, {GANG_RESTART}), [output[-3000:] for _, output in results]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for pid in _workers(tmp_path):
            os.kill(pid, signal.SIGKILL)
