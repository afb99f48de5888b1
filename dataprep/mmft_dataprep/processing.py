"""Resize every located image on all workers, reusing outputs of an earlier run made with the same settings."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, SourceError
from .imaging import prepare_image
from .options import ImageSettings
from .sources import Locator, open_image_source

log = logging.getLogger("mmft_dataprep")

SETTINGS_FILE = ".mmft-image-settings.json"
# Tasks handed to a worker at a time: large enough to amortise IPC, small enough to balance the tail.
CHUNK_SIZE = 4


@dataclass(frozen=True)
class ImageTask:
    image: str
    locator: Locator
    destination: str


@dataclass(frozen=True)
class TaskResult:
    image: str
    status: str  # "written", "reused", or a drop reason
    detail: str = ""


def prepare_output_dir(images_dir: Path, settings: ImageSettings) -> bool:
    """Make the images dir ready; True when its existing images were made with ``settings`` and can be reused.

    Images of an earlier run with other settings are deleted; files that no run of ours made (no settings
    file) are never touched: the run refuses to start instead.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    for leftover in images_dir.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    settings_file = images_dir / SETTINGS_FILE
    wanted = settings.fingerprint()
    existing = [entry for entry in os.scandir(images_dir) if entry.is_file() and not entry.name.startswith(".")]
    try:
        previous = json.loads(settings_file.read_text())
    except FileNotFoundError:
        if existing:
            raise ConfigError(f"{images_dir} already holds {len(existing)} files that mmft dataprep did not "
                              "write; choose an empty --output-dir") from None
        previous = None
    except (OSError, ValueError):
        previous = None
    if previous == wanted:
        return True
    if existing:
        log.warning("image settings changed (now %s): removing %d images of an earlier run", wanted, len(existing))
    for entry in existing:
        os.unlink(entry.path)
    tmp = settings_file.with_name(settings_file.name + ".tmp")
    tmp.write_text(json.dumps(wanted))
    os.replace(tmp, settings_file)
    return False


def run_tasks(tasks: list[ImageTask], settings: ImageSettings, workers: int,
              on_result: Callable[[TaskResult], None]) -> None:
    if workers == 1 or len(tasks) < 2 * CHUNK_SIZE:
        for task in tasks:
            on_result(process_task(task, settings))
        return
    # spawn, not fork: the parent may hold storage-client sockets and threads that must not be duplicated.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        for result in pool.imap_unordered(_process_in_worker, tasks, chunksize=CHUNK_SIZE):
            on_result(result)


def process_task(task: ImageTask, settings: ImageSettings) -> TaskResult:
    destination = Path(task.destination)
    if destination.exists():
        return TaskResult(task.image, "reused")
    try:
        source = open_image_source(task.locator)
    except FileNotFoundError as error:
        return TaskResult(task.image, "missing_file", str(error))
    except zipfile.BadZipFile as error:
        return TaskResult(task.image, "corrupt", f"archive member: {error}")
    except SourceError as error:
        return TaskResult(task.image, "fetch_failed", str(error))
    outcome = prepare_image(source, destination, settings)
    return TaskResult(task.image, outcome.status, outcome.detail)


_worker_settings: ImageSettings | None = None


def _init_worker(settings: ImageSettings) -> None:
    global _worker_settings
    _worker_settings = settings


def _process_in_worker(task: ImageTask) -> TaskResult:
    return process_task(task, _worker_settings)
