"""Google Cloud Storage for every mmft workload: URIs, the client, listing and checked transfers.

The one Cloud Storage helper of `mmft dataprep`, `mmft train` and `mmft evaluate`. ``make_client`` honours
``STORAGE_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:9023``) with anonymous credentials, so the same code runs against
an emulator in tests and against GCS with Workload Identity in a pod. Every transfer is verified by checksum:
downloads by the object's CRC32C/MD5 (google-cloud-storage's ``checksum="auto"``), uploads by comparing the
object's CRC32C after the upload with the local file's (a corrupt object is deleted). Failures raise
``StorageError`` naming the object (uploads let the API's own errors through); each workload maps them to its own
exit code.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
# Any file larger than one chunk goes up in resumable chunks that survive a dropped connection; the chunk size
# must be a multiple of 256 KiB.
RESUMABLE_CHUNK_BYTES = 16 * 1024 * 1024


class InvalidGcsUri(ValueError):
    """Not a gs://BUCKET[/NAME] URI."""


class StorageError(OSError):
    """A Cloud Storage call failed; the message names the object."""


class ObjectNotFound(StorageError, FileNotFoundError):
    """The bucket or object does not exist (a FileNotFoundError, as for a local input)."""


@dataclass(frozen=True)
class GcsPath:
    bucket: str
    name: str  # object name or prefix, without a leading slash

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def prefix(self) -> str:
        """The name as a directory prefix: no leading or trailing slash."""
        return self.name.strip("/")

    def child(self, relative: str) -> GcsPath:
        return GcsPath(self.bucket, f"{self.prefix}/{relative}" if self.prefix else relative)


def is_gcs_uri(value: str | os.PathLike | None) -> bool:
    return isinstance(value, str) and value.startswith("gs://")


def parse_gcs_uri(uri: str) -> GcsPath:
    if not is_gcs_uri(uri):
        raise InvalidGcsUri(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise InvalidGcsUri(f"gs:// URI without a bucket: {uri!r}")
    return GcsPath(bucket, name)


def make_client(project: str | None = None):
    """A storage client: against the emulator when STORAGE_EMULATOR_HOST is set, else with default credentials."""
    from google.cloud import storage

    emulator = os.environ.get(EMULATOR_ENV)
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        return storage.Client(project=project or os.environ.get("GOOGLE_CLOUD_PROJECT", "mmft-emulator"),
                              credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    return storage.Client(project=project)


_process_clients: dict[tuple[int, str | None], object] = {}


def process_client():
    """This process's client. DataLoader workers are forked, and an HTTP session must not be shared across a fork;
    keyed by the emulator too, so a process pointed at another emulator (tests, one after another) never reuses a
    client of the previous one."""
    key = (os.getpid(), os.environ.get(EMULATOR_ENV))
    if key not in _process_clients:
        _process_clients[key] = make_client()
    return _process_clients[key]


def list_objects(client, prefix: GcsPath) -> list[tuple[str, int]]:
    """(object name, size) of every object under the prefix, skipping folder placeholders."""
    blobs = client.list_blobs(prefix.bucket, prefix=prefix.prefix + "/" if prefix.prefix else None)
    try:
        return [(blob.name, blob.size or 0) for blob in blobs if not blob.name.endswith("/")]
    except Exception as error:  # noqa: BLE001 - google.api_core raises many kinds; name the prefix instead
        raise StorageError(f"cannot list {prefix.uri}: {_short(error)}") from error


def download_bytes(client, path: GcsPath) -> bytes:
    """The object's content, checked against its stored CRC32C or MD5."""
    from google.api_core.exceptions import NotFound

    try:
        return client.bucket(path.bucket).blob(path.name).download_as_bytes(checksum="auto")
    except NotFound as error:
        raise ObjectNotFound(f"{path.uri} does not exist") from error
    except Exception as error:  # noqa: BLE001
        raise StorageError(f"cannot download {path.uri}: {_short(error)}") from error


def download_file(client, path: GcsPath, destination: Path) -> Path:
    """Download to ``destination`` atomically: a checked temporary file renamed into place."""
    from google.api_core.exceptions import NotFound

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(fd)
    try:
        client.bucket(path.bucket).blob(path.name).download_to_filename(tmp, checksum="auto")
        os.replace(tmp, destination)
    except NotFound as error:
        Path(tmp).unlink(missing_ok=True)
        raise ObjectNotFound(f"{path.uri} does not exist") from error
    except Exception as error:  # noqa: BLE001
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"cannot download {path.uri}: {_short(error)}") from error
    return destination


def upload_file(client, source: Path, path: GcsPath, content_type: str | None = None) -> str:
    """Upload (resumably, in chunks) and verify: the object's CRC32C must equal the local file's, else the object is
    deleted and StorageError raised. Returns the CRC32C. The API's own errors pass through as google.api_core raises
    them (NotFound, Forbidden...): their type is what a run's failure message shows first."""
    blob = client.bucket(path.bucket).blob(path.name, chunk_size=RESUMABLE_CHUNK_BYTES)
    expected = crc32c_base64(source)
    # checksum="crc32c" makes the client compare its own hash with the one the server computed.
    blob.upload_from_filename(str(source), content_type=content_type, checksum="crc32c")
    blob.reload()
    if blob.crc32c != expected:
        blob.delete()
        raise StorageError(f"upload of {source} to {path.uri} is corrupt: crc32c {blob.crc32c} != {expected}")
    log.info("uploaded %s (%d bytes, crc32c %s)", path.uri, source.stat().st_size, expected)
    return expected


def upload_directory(client, local_dir: Path, uri: str,
                     skip: Callable[[Path], bool] = lambda path: False) -> dict[Path, str]:
    """Upload every file under ``local_dir`` (except those ``skip`` rejects), each verified; returns each local
    file's ``gs://`` URI."""
    target = parse_gcs_uri(uri)
    uploaded: dict[Path, str] = {}
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file() and not skip(p)):
        destination = target.child(path.relative_to(local_dir).as_posix())
        upload_file(client, path, destination)
        uploaded[path] = destination.uri
    return uploaded


def fetch_file(uri: str, cache_dir: Path) -> Path:
    """A ``gs://`` object as a file under ``cache_dir/BUCKET/NAME`` (downloaded once); a local path as is."""
    if not is_gcs_uri(uri):
        return Path(uri)
    path = parse_gcs_uri(uri)
    target = cache_dir / path.bucket / path.name
    if not target.exists():
        download_file(process_client(), path, target)
    return target


def fetch_tree(uri: str, cache_dir: Path) -> Path:
    """A directory (model or adapter) under a ``gs://`` prefix, downloaded file by file into the cache (files already
    there are kept); a local path as is."""
    if not is_gcs_uri(uri):
        return Path(uri)
    prefix = parse_gcs_uri(uri)
    target = cache_dir / prefix.bucket / prefix.prefix
    objects = list_objects(process_client(), prefix)
    if not objects:
        raise ObjectNotFound(f"{uri} holds no files")
    for name, _size in objects:
        destination = target / name[len(prefix.prefix) + 1:]
        if not destination.exists():
            download_file(process_client(), GcsPath(prefix.bucket, name), destination)
    return target


def crc32c_base64(source: Path) -> str:
    """The file's CRC32C as GCS reports it (big-endian, base64)."""
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def _short(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
