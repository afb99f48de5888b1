"""Start detached processes and stop them again by pid file, also after the starting Python process is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class ProcessTable:
    """Pid files in ``<state>/pids``; each names the pid and a word of its command line to refuse a reused pid."""

    def __init__(self, state_dir: Path):
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # survives the `mmft cluster up` process and ignores its Ctrl-C
            )
        (self.pid_dir / f"{name}.pid").write_text(f"{process.pid}\n{_identifying_word(argv)}\n")
        _wait_for_exec(process, _identifying_word(argv))
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def running(self) -> dict[str, int]:
        alive = {}
        for pid_file in sorted(self.pid_dir.glob("*.pid")):
            pid = self._live_pid(pid_file)
            if pid is not None:
                alive[pid_file.stem] = pid
        return alive

    def stop(self, name: str, timeout: float = 15.0) -> bool:
        """Stops one recorded process (SIGTERM, SIGKILL after ``timeout``); returns whether it was running."""
        pid_file = self.pid_dir / f"{name}.pid"
        if not pid_file.exists():
            return False
        pid = self._live_pid(pid_file)
        if pid is not None:
            _terminate(pid, timeout)
        pid_file.unlink()
        return pid is not None

    def stop_all(self, timeout: float = 15.0) -> list[str]:
        """Stops the recorded processes newest first (clients before the apiserver before etcd, so none waits on a
        server already gone): SIGTERM, then SIGKILL after ``timeout``. Returns the names stopped."""
        stopped = []
        newest_first = sorted(self.pid_dir.glob("*.pid"), key=lambda path: path.stat().st_mtime_ns, reverse=True)
        for pid_file in newest_first:
            pid = self._live_pid(pid_file)
            if pid is not None:
                _terminate(pid, timeout)
                stopped.append(pid_file.stem)
            pid_file.unlink()
        return stopped

    @staticmethod
    def _live_pid(pid_file: Path) -> int | None:
        lines = pid_file.read_text().split("\n")
        pid, word = int(lines[0]), lines[1]
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return None
        return pid if word in command_line and _alive(pid) else None


def _wait_for_exec(process: subprocess.Popen, word: str, timeout: float = 5.0) -> None:
    """Until the child has exec'd, /proc shows the parent's command line and the pid file would look stale."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if word in Path(f"/proc/{process.pid}/cmdline").read_bytes().decode(errors="replace"):
                return
        except FileNotFoundError:
            return
        time.sleep(0.01)


def _identifying_word(argv: list[str]) -> str:
    """The executable, or the module after ``-m`` for Python processes."""
    if "-m" in argv:
        return argv[argv.index("-m") + 1]
    return argv[0]


def _alive(pid: int) -> bool:
    try:
        waited_pid, _ = os.waitpid(pid, os.WNOHANG)  # reaps our own children so they do not linger as zombies
        if waited_pid == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _terminate(pid: int, timeout: float) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            _signal(pid, signal.SIGKILL)
            return
        time.sleep(0.05)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
