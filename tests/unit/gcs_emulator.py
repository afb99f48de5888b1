"""A real GCS JSON API for tests: gcp-storage-emulator in a subprocess on 127.0.0.1.

Use the ``gcs_emulator`` fixture (session scope, yields the endpoint URL) and point clients at it with
``monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)``; ``mmft_storage.gcs.make_client`` then talks to it with
anonymous credentials. Give each test its own bucket name: the emulator's state lives for the session.

    from gcs_emulator import gcs_emulator  # noqa: F401 - the fixture
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

STARTUP_TIMEOUT_SECONDS = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_gcs_emulator():
    """Start the emulator (in memory) and yield its endpoint URL; stop it on exit."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited: {process.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator did not answer on {endpoint}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def gcs_emulator():
    with running_gcs_emulator() as endpoint:
        yield endpoint
