"""The root conftest.py's guard: a session that executed fewer tests than it selected fails, however it ended."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PASSES_AND_SKIPS = """
import pytest

def test_passes():
    assert True

@pytest.mark.skip(reason="declared")
def test_declared_skip():
    pass
"""


def _run_session(tmp_path: Path, test_source: str, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_session.py").write_text(test_source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(tmp_path),
         *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


def test_a_complete_session_with_a_declared_skip_passes(tmp_path):
    result = _run_session(tmp_path, PASSES_AND_SKIPS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout


def test_os_exit_0_inside_a_test_fails_the_session(tmp_path):
    result = _run_session(tmp_path, PASSES_AND_SKIPS + """
import os

def test_ends_the_process():
    os._exit(0)

def test_never_runs():
    pass
""")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "os._exit(0) ended the test session early; 2 of 4 selected tests never ran" in result.stderr


def test_pytest_exit_with_code_0_fails_the_session(tmp_path):
    result = _run_session(tmp_path, PASSES_AND_SKIPS + """
def test_stops_the_session():
    pytest.exit("stopping", returncode=0)

def test_never_runs():
    pass
""")
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert "2 of 4 selected tests never ran" in result.stdout
    assert "test_session.py::test_never_runs" in result.stdout


def test_deselected_tests_are_not_expected(tmp_path):
    result = _run_session(tmp_path, PASSES_AND_SKIPS, "-k", "passes")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_forked_child_may_end_with_os_exit(tmp_path):
    result = _run_session(tmp_path, """
import multiprocessing

def _child():
    pass

def test_forks_a_child():
    process = multiprocessing.get_context("fork").Process(target=_child)
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0

def test_after_the_fork():
    pass
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
