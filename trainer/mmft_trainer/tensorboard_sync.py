"""Copies TensorBoard event files from the trainer's disk to a directory the TensorBoard Deployment can read.

The trainer's output volume is a ReadWriteOnce disk that no other pod can mount; the sync target is on the GCS Fuse
mount that TensorBoard reads. Event files only grow, so a file is copied again when its size or mtime changed.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

log = logging.getLogger(__name__)

EVENT_FILE_MARK = "tfevents"


class TensorBoardSync:
    def __init__(self, source: Path, target: Path, interval_seconds: float = 60.0) -> None:
        self.source = source
        self.target = target
        self.interval_seconds = interval_seconds
        self._copied: dict[Path, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync_once(self) -> int:
        """Copy new or grown event files; return how many were copied. Errors are logged, never raised."""
        copied = 0
        if not self.source.is_dir():
            return 0
        for path in self.source.rglob(f"*{EVENT_FILE_MARK}*"):
            if not path.is_file():
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._copied.get(path) == signature:
                continue
            destination = self.target / path.relative_to(self.source)
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, destination)
            except OSError as error:
                log.warning("TensorBoard sync of %s failed: %s", path, error)
                continue
            self._copied[path] = signature
            copied += 1
        return copied

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tensorboard-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and make a last copy so the final steps are visible."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_seconds + 5)
        self.sync_once()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.sync_once()
