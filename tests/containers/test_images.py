"""The images of docs/images.md, built here with localcluster/build-images.sh and run with the local Docker engine.

The build starts Debian's dockerd when none answers (root). On a cold machine the first build takes minutes (the
workload image installs torch and Axolotl); later runs find every image up to date.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "localcluster" / "build-images.sh"
TAG = os.environ.get("MMFT_IMAGE_TAG", "dev")
IMAGES = {target: f"mmft-{target}:{TAG}" for target in ("operator", "workload", "tensorboard")}

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]


def build_images() -> tuple[dict[str, str], str]:
    """Runs the build script; returns {image: image ID} from its stdout, and its stderr."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT), "all"], capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, f"build-images.sh exited {result.returncode}:\n{result.stderr[-4000:]}"
    printed = dict(line.split() for line in result.stdout.splitlines())
    return printed, result.stderr


def docker(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def run_python(image: str, code: str, timeout: float = 600) -> str:
    return docker("run", "--rm", "--entrypoint", "python3", image, "-c", code, timeout=timeout).stdout


@pytest.fixture(scope="session")
def built() -> dict[str, str]:
    printed, _ = build_images()
    return printed


def test_the_script_prints_each_image_with_its_id(built):
    assert sorted(built) == sorted(IMAGES.values())
    for image, image_id in built.items():
        assert image_id.startswith("sha256:")
        assert docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() == image_id


def test_an_unchanged_tree_builds_nothing(built):
    started = time.monotonic()
    printed, log = build_images()
    assert printed == built
    assert "building" not in log, log
    for image in IMAGES.values():
        assert f"{image} is up to date" in log
    print(f"unchanged tree: {time.monotonic() - started:.1f} s")


def test_no_superseded_image_is_left_behind(built):
    """A rebuilt tag leaves its earlier image untagged; the script removes those (4.6 GB each for the workload)."""
    left = docker("images", "--quiet", "--filter", "dangling=true", "--filter", "label=io.mmft.content-key").stdout
    assert left.split() == []


DOCKER_SIZE_UNITS = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def docker_size_bytes(size: str) -> float:
    """Docker's human sizes ('330MB', '2.06kB', '0B') in bytes (decimal units, as `docker system df` prints them)."""
    number = size.rstrip("kMGTB")
    return float(number) * DOCKER_SIZE_UNITS[size[len(number) :]]


def test_buildkits_layer_cache_stays_trimmed(built):
    """BuildKit keeps every stage it ran (the CUDA-sized packages stage alone is 7.3 GB); after a build the script
    keeps at most MMFT_BUILD_CACHE_KEEP (1 GB) of layers besides pip's cache mount. Before it did, 22 GB piled up and
    filled the disk. Records share layers, so the engine's own total is the measure, less the cache mounts."""
    totals = dict(
        line.split("\t") for line in docker("system", "df", "--format", "{{.Type}}\t{{.Size}}").stdout.splitlines()
    )
    records = json.loads(docker("system", "df", "-v", "--format", "{{json .BuildCache}}").stdout or "[]")
    cache_mounts = sum(docker_size_bytes(r["Size"]) for r in records if r["CacheType"] == "exec.cachemount")
    layers = docker_size_bytes(totals["Build Cache"]) - cache_mounts
    assert layers <= 1.05e9, f"{layers / 1e9:.2f} GB of BuildKit layers kept ({len(records)} records)"


@pytest.mark.parametrize("target", list(IMAGES))
def test_images_run_as_user_1000_with_mmft_or_tensorboard_as_entry_point(built, target):
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGES[target]).stdout)
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == (["tensorboard"] if target == "tensorboard" else ["mmft"])
    # Caches and scratch space are writable by that user, wherever the variables point.
    written = docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        IMAGES[target],
        "-c",
        'for dir in "$HF_HOME" "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR" "$MPLCONFIGDIR" /workspace /tmp; do '
        'mkdir -p "$dir" && touch "$dir/probe" && echo "$dir"; done',
    ).stdout.split()
    assert len(written) == 6 and "/home/mmft/.cache/huggingface" in written


def test_operator_image_runs_mmft_and_kopf_without_torch(built):
    help_text = docker("run", "--rm", IMAGES["operator"], "--help").stdout
    assert "operator" in help_text and "cluster" in help_text
    found = run_python(
        IMAGES["operator"],
        "import importlib.util, pkgutil, sys, kopf, mmft_operator\n"
        "for module in pkgutil.walk_packages(mmft_operator.__path__, 'mmft_operator.'):\n"
        "    __import__(module.name)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'PIL') if importlib.util.find_spec(m)))",
    )
    assert found.strip() == "[]", f"the operator image carries {found.strip()}"


# Everything the trainer, evaluator and dataprep import, and the packages Axolotl loads for the plugins mmft renders
# (Liger) and for QLoRA (bitsandbytes).
WORKLOAD_CHECK = """
import importlib, pkgutil, sys
import mmft_trainer, mmft_evaluator, mmft_dataprep, mmft_operator
modules = []
for package in (mmft_trainer, mmft_evaluator, mmft_dataprep, mmft_operator):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):
        importlib.import_module(module.name)
        modules.append(module.name)
for name in ('axolotl', 'axolotl.cli.train', 'axolotl.integrations.liger', 'liger_kernel.transformers', 'bitsandbytes',
             'peft', 'transformers', 'torchvision', 'google.cloud.storage', 'tensorboard', 'PIL', 'numpy',
             'matplotlib', 'triton'):
    importlib.import_module(name)
import torch
print(len(modules), torch.__version__, torch.version.cuda, torch.cuda.is_available())
"""


def test_workload_image_imports_everything_the_workloads_import(built):
    modules, torch_version, cuda_version, cuda_available = run_python(IMAGES["workload"], WORKLOAD_CHECK).split()[-4:]
    assert int(modules) > 20
    assert torch_version.startswith("2.11.0") and cuda_version == "13.0"
    assert cuda_available == "False"  # the CPU variant: no device, whatever the host has


@pytest.mark.parametrize("command", ["train", "evaluate", "dataprep"])
def test_workload_image_runs_each_mmft_command(built, command):
    result = docker("run", "--rm", IMAGES["workload"], command, "--help")
    assert result.stdout.startswith(f"usage: mmft {command}")


def test_workload_image_trains_a_tiny_transformer_on_cpu_torch(built):
    # Forward, backward and an optimizer step through transformers on the stubbed CUDA libraries.
    code = (
        "import torch, transformers\n"
        "torch.manual_seed(0)\n"
        "config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,"
        " num_attention_heads=4, num_key_value_heads=2)\n"
        "model = transformers.LlamaForCausalLM(config)\n"
        "optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)\n"
        "batch = torch.randint(0, 64, (4, 16))\n"
        "losses = []\n"
        "for _ in range(20):\n"
        "    loss = model(input_ids=batch, labels=batch).loss\n"
        "    loss.backward(); optimizer.step(); optimizer.zero_grad(); losses.append(loss.item())\n"
        "print(losses[0], losses[-1])\n"
    )
    first, last = map(float, run_python(IMAGES["workload"], code).split()[-2:])
    assert last < first / 2, (first, last)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tensorboard_image_serves_http(built):
    name = f"mmft-test-tensorboard-{uuid.uuid4().hex[:8]}"
    port = free_port()
    # As the operator runs it: command tensorboard, a logdir, all interfaces, HOME=/tmp.
    docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:6006",
        "-e",
        "HOME=/tmp",
        IMAGES["tensorboard"],
        "--logdir=/workspace",
        "--host=0.0.0.0",
        "--port=6006",
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    status = response.status
                    break
            except OSError:
                running = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
                assert running == "true", docker("logs", name, check=False).stderr[-2000:]
                time.sleep(1)
        assert status == 200, docker("logs", name, check=False).stderr[-2000:]
    finally:
        docker("rm", "-f", name, check=False)
