"""localcluster/build-images.sh refuses bad input and says what to install, before it touches any engine.

The builds themselves run in tests/containers/test_images.py (marker `containers`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "localcluster" / "build-images.sh"
BASH = shutil.which("bash")
# What the script runs before it looks for an engine.
TOOLS = ("mkdir", "cut", "sha256sum", "awk", "seq", "sleep", "tr")


def run_script(*args: str, path: str, tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "MMFT_IMAGE_CACHE": str(tmp_path / "images"), **environ}
    return subprocess.run([BASH, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def tools(bin_dir: Path, docker: bool) -> Path:
    """A PATH folder with the script's tools and, if asked, a `docker` whose engine never answers (a mock: `info`
    fails, anything else is an error of the test). No dockerd."""
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if docker:
        script = bin_dir / "docker"
        script.write_text('#!/bin/sh\n[ "$1" = info ] && exit 1\necho "unexpected docker $*" >&2; exit 99\n')
        script.chmod(0o755)
    return bin_dir


def test_an_unknown_target_is_refused(tmp_path):
    result = run_script("operator", "workloads", path=str(tools(tmp_path / "bin", docker=True)), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "unknown target workloads: use operator, workload, tensorboard, base or all" in result.stderr
    assert "unexpected docker" not in result.stderr


def test_an_unknown_torch_variant_is_refused(tmp_path):
    result = run_script(path=str(tools(tmp_path / "bin", docker=True)), tmp_path=tmp_path, MMFT_TORCH_VARIANT="rocm")
    assert result.returncode == 1
    assert "MMFT_TORCH_VARIANT=rocm: use cpu or cuda" in result.stderr


def test_without_docker_it_names_the_package_and_the_command(tmp_path):
    result = run_script("operator", path=str(tools(tmp_path / "bin", docker=False)), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "no docker command. Install Debian's Docker engine: apt-get install -y docker.io" in result.stderr


def test_an_engine_that_does_not_answer_and_no_dockerd_names_the_package(tmp_path):
    result = run_script("operator", path=str(tools(tmp_path / "bin", docker=True)), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "no Docker engine answers and dockerd is not installed. Install it: apt-get install -y docker.io" in (
        result.stderr
    )
    assert "unexpected docker" not in result.stderr
