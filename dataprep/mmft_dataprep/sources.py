"""Where the input images are: a local or FUSE-mounted directory, a gs:// prefix, or downloaded zip archives.

The index maps a file name (``ISIC_0015719.jpg``) to a locator, a small picklable tuple that a worker process
opens: ``("file", path)``, ``("gcs", bucket, object)`` or ``("zip", archive, member)``. Zip members are read
in place (their CRC is checked on read), so a 25 GB archive needs no second 25 GB of extracted files.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mmft_storage import gcs

from . import http_download
from .errors import ConfigError, SourceError

log = logging.getLogger(__name__)

Locator = tuple

# Per worker process: opened archives and the storage client, reused across images.
_open_archives: dict[str, zipfile.ZipFile] = {}
_gcs_client = None


@dataclass
class ImageIndex:
    locations: dict[str, Locator] = field(default_factory=dict)
    # File names found in more than one place: the first (in sorted order of sources) is used.
    shadowed: dict[str, list[str]] = field(default_factory=dict)

    def add(self, file_name: str, locator: Locator) -> None:
        if file_name in self.locations:
            self.shadowed.setdefault(file_name, []).append(describe(locator))
            return
        self.locations[file_name] = locator

    def locate(self, image_name: str, extension: str) -> Locator | None:
        base = Path(image_name).name
        return self.locations.get(base) or self.locations.get(base + extension)


def build_index(images_dir: str | None, archive_urls: tuple[str, ...], download_dir: Path,
                on_download_progress=None) -> ImageIndex:
    index = ImageIndex()
    if images_dir:
        if gcs.is_gcs_uri(images_dir):
            try:
                _index_gcs(index, gcs.parse_gcs_uri(images_dir))
            except gcs.InvalidGcsUri as error:
                raise ConfigError(f"--images-dir: {error}") from error
            except gcs.StorageError as error:
                raise SourceError(str(error)) from error
        else:
            _index_directory(index, Path(images_dir))
    for url in archive_urls:
        archive = http_download.download(
            url, download_dir / http_download.archive_file_name(url),
            on_progress=(lambda done, total, url=url: on_download_progress(url, done, total))
            if on_download_progress else None)
        _index_archive(index, archive)
    return index


def _index_directory(index: ImageIndex, root: Path) -> None:
    if not root.is_dir():
        raise ConfigError(f"--images-dir {root} is not a directory")
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                index.add(name, ("file", os.path.join(directory, name)))


def _index_gcs(index: ImageIndex, prefix: gcs.GcsPath) -> None:
    for name, _size in sorted(gcs.list_objects(gcs.make_client(), prefix)):
        index.add(name.rsplit("/", 1)[-1], ("gcs", prefix.bucket, name))


def _index_archive(index: ImageIndex, archive: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = sorted(info.filename for info in zipped.infolist() if not info.is_dir())
    except zipfile.BadZipFile as error:
        raise SourceError(f"{archive} is not a readable zip archive ({error}); delete it to download again") \
            from error
    for member in members:
        name = member.rsplit("/", 1)[-1]
        if name and not name.startswith(".") and not member.startswith("__MACOSX/"):
            index.add(name, ("zip", str(archive), member))


def open_image_source(locator: Locator):
    """A path or file object for PIL; raises FileNotFoundError or SourceError when it cannot be fetched."""
    kind = locator[0]
    if kind == "file":
        return locator[1]
    if kind == "gcs":
        global _gcs_client
        if _gcs_client is None:
            _gcs_client = gcs.make_client()
        try:
            return io.BytesIO(gcs.download_bytes(_gcs_client, gcs.GcsPath(locator[1], locator[2])))
        except gcs.StorageError as error:  # a missing object too: listed, so it was there and could not be fetched
            raise SourceError(str(error)) from error
    if kind == "zip":
        archive = _open_archives.get(locator[1])
        if archive is None:
            archive = _open_archives[locator[1]] = zipfile.ZipFile(locator[1])
        # ZipExtFile checks the member's CRC when it reaches the end: a damaged member raises BadZipFile.
        with archive.open(locator[2]) as member:
            return io.BytesIO(member.read())
    raise ValueError(f"unknown image locator {locator!r}")


def describe(locator: Locator) -> str:
    kind = locator[0]
    if kind == "gcs":
        return f"gs://{locator[1]}/{locator[2]}"
    if kind == "zip":
        return f"{locator[1]}!{locator[2]}"
    return str(locator[1])
