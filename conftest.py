"""Session-wide rules: a run that executed fewer tests than it selected never passes, and the processes a test
starts end with it (the ``process_groups`` fixtures).

pytest exits 0 when a test ends the session early without failing it: ``pytest.exit(returncode=0)``, or a
library calling ``os._exit(0)`` in the test process (a watchdog thread once did, 120 s after an in-process
``mmft train``; the remaining tests never ran and CI was green). Here every selected test must report an outcome
(passed, failed or skipped, a declared skip included), or the session fails and says which tests never ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

INCOMPLETE_RUN_EXIT_CODE = pytest.ExitCode.TESTS_FAILED


class CompleteRunGuard:
    """A pytest plugin: counts the selected tests and the ones that reported an outcome."""

    def __init__(self) -> None:
        self.selected: list[str] = []
        self.reported: set[str] = set()
        self.running = False
        self._pid = os.getpid()
        self._real_exit = os._exit
        self._capture = None

    def missing(self) -> list[str]:
        return [nodeid for nodeid in self.selected if nodeid not in self.reported]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After deselection (-m, -k): what this run promised to execute.
        self.selected = [item.nodeid for item in session.items]
        if not _runs_tests(session.config):
            return
        self.running = True
        self._capture = session.config.pluginmanager.getplugin("capturemanager")
        os._exit = self._exit  # the one way to see an exit that skips every hook

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # A test has an outcome once it ran (call), or once it was skipped or failed before running (setup).
        if report.when == "call" or report.outcome in ("failed", "skipped"):
            self.reported.add(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.running = False
        os._exit = self._real_exit
        # Stopping on purpose (-x, --maxfail, Ctrl-C, collection errors) already fails the session.
        if not _runs_tests(session.config) or exitstatus != pytest.ExitCode.OK or session.shouldfail:
            return
        missing = self.missing()
        if missing:
            session.exitstatus = INCOMPLETE_RUN_EXIT_CODE
            message = (f"{len(missing)} of {len(self.selected)} selected tests never ran (the session ended early "
                       f"without failing them): {', '.join(missing[:10])}")
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(message, red=True)
            else:
                print(message, file=sys.stderr)

    def _exit(self, code: int) -> None:
        # Forked children (multiprocessing, DataLoader workers) end with os._exit as they should: only the session's
        # own process is guarded, and only while tests run.
        if os.getpid() == self._pid and self.running:
            if self._capture is not None:  # the test's output is being captured: say it where the user sees it
                self._capture.suspend_global_capture(in_=True)
            missing = self.missing()
            print(f"\nos._exit({code}) ended the test session early; {len(missing)} of {len(self.selected)} "
                  f"selected tests never ran, e.g. {missing[:3]}", file=sys.stderr, flush=True)
            if code == 0:
                code = int(INCOMPLETE_RUN_EXIT_CODE)
        self._real_exit(code)


def _runs_tests(config: pytest.Config) -> bool:
    option = config.option
    return not (option.collectonly or getattr(option, "setuponly", False) or getattr(option, "setupplan", False))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(CompleteRunGuard(), "mmft-complete-run-guard")


class ProcessGroups:
    """Processes a test starts, each in its own session (process group), all killed with their children at the end.

    ``start`` takes subprocess.Popen's arguments. Whatever ends the test (pass, failure, timeout, Ctrl-C), teardown
    sends SIGKILL to every group still alive and reaps the leaders, so no trainer or emulator outlives its test.
    """

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, command: list[str], **popen_kwargs) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone: the leader and every child have exited
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.started.clear()


@pytest.fixture
def process_groups():
    groups = ProcessGroups()
    try:
        yield groups
    finally:
        groups.kill_all()


@pytest.fixture(scope="session")
def session_process_groups():
    groups = ProcessGroups()
    try:
        yield groups
    finally:
        groups.kill_all()
