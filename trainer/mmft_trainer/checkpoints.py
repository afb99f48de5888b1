"""Which checkpoints are complete, and which one a restarted run resumes from.

The Trainer writes ``checkpoint-N`` in place, so a pod killed mid-save leaves a directory that looks like a checkpoint
but is not one. mmft writes :data:`COMPLETE_MARKER` only after the Trainer's ``on_save`` (model, optimizer,
scheduler, RNG and trainer state all written), and resumes only from a directory that carries it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

COMPLETE_MARKER = "mmft-checkpoint-complete.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def mark_complete(checkpoint_dir: Path, step: int) -> None:
    marker = checkpoint_dir / COMPLETE_MARKER
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step}))
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, marker)


def is_complete(checkpoint_dir: Path) -> bool:
    return (checkpoint_dir / COMPLETE_MARKER).is_file()


def checkpoints(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    found = [path for path in output_dir.iterdir() if path.is_dir() and checkpoint_step(path) is not None]
    return sorted(found, key=checkpoint_step)


def newest_complete(output_dir: Path) -> Path | None:
    complete = [path for path in checkpoints(output_dir) if is_complete(path)]
    return complete[-1] if complete else None


def remove_incomplete(output_dir: Path) -> list[Path]:
    """Delete half-written checkpoints so neither resume nor the Trainer's rotation ever picks them."""
    removed = []
    for path in checkpoints(output_dir):
        if not is_complete(path):
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", path)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
