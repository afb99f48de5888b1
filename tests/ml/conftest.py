"""Shared fixtures of the ML tests: offline, no telemetry, one tiny Gemma 3 built per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Without AXOLOTL_DO_NOT_TRACK a finished run hung for 9+ minutes on telemetry trying to reach the network.
OFFLINE_ENV = {
    "AXOLOTL_DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)

sys.path.insert(0, str(Path(__file__).parent))

from tiny_gemma import build_tiny_gemma3, write_chat_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    """A tiny random Gemma 3 with processor, saved once per test session (treat it as read-only)."""
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_chat_dataset(tmp_path_factory) -> Path:
    """A 16-row JSONL in the seed's chat_template format with small JPEG lesions (read-only)."""
    return write_chat_dataset(tmp_path_factory.mktemp("tiny-data"))
