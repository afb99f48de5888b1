"""Google Cloud Storage helpers shared by mmft workloads: client construction, listing, checked transfers.

``make_client`` honours ``STORAGE_EMULATOR_HOST`` (e.g. ``http://127.0.0.1:9023``) with anonymous credentials,
so the same code runs against gcp-storage-emulator in tests and against GCS with Workload Identity in a pod.
Every transfer is verified by checksum: downloads by the object's CRC32C/MD5 (google-cloud-storage's
``checksum="auto"``), uploads by comparing the object's CRC32C after the upload with the local file's.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, SourceError

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class ObjectNotFound(SourceError):
    """The bucket or object does not exist."""


@dataclass(frozen=True)
class GcsPath:
    bucket: str
    name: str  # object name or prefix, without a leading slash

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def child(self, relative: str) -> GcsPath:
        return GcsPath(self.bucket, f"{self.name.rstrip('/')}/{relative}" if self.name else relative)


def is_gcs_uri(value: str | os.PathLike | None) -> bool:
    return isinstance(value, str) and value.startswith("gs://")


def parse_gcs_uri(uri: str) -> GcsPath:
    if not is_gcs_uri(uri):
        raise ConfigError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ConfigError(f"gs:// URI without a bucket: {uri!r}")
    return GcsPath(bucket, name)


def make_client(project: str | None = None):
    """A storage client: against the emulator when STORAGE_EMULATOR_HOST is set, else with default credentials."""
    from google.cloud import storage

    emulator = os.environ.get(EMULATOR_ENV)
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        endpoint = emulator if "://" in emulator else f"http://{emulator}"
        return storage.Client(project=project or "mmft-emulator", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": endpoint})
    return storage.Client(project=project)


def list_objects(client, prefix: GcsPath) -> list[tuple[str, int]]:
    """(object name, size) of every object under the prefix, skipping folder placeholders."""
    blobs = client.list_blobs(prefix.bucket, prefix=prefix.name.rstrip("/") + "/" if prefix.name else None)
    try:
        return [(blob.name, blob.size or 0) for blob in blobs if not blob.name.endswith("/")]
    except Exception as error:  # noqa: BLE001 - google.api_core raises many kinds; name the prefix instead
        raise SourceError(f"cannot list {prefix.uri}: {_short(error)}") from error


def download_bytes(client, path: GcsPath) -> bytes:
    """The object's content, checked against its stored CRC32C or MD5."""
    from google.api_core.exceptions import NotFound

    try:
        return client.bucket(path.bucket).blob(path.name).download_as_bytes(checksum="auto")
    except NotFound as error:
        raise ObjectNotFound(f"{path.uri} does not exist") from error
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"cannot download {path.uri}: {_short(error)}") from error


def download_file(client, path: GcsPath, destination: Path) -> Path:
    """Download to ``destination`` atomically: a checked temporary file renamed into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    os.close(fd)
    try:
        client.bucket(path.bucket).blob(path.name).download_to_filename(tmp, checksum="auto")
        os.replace(tmp, destination)
    except Exception as error:  # noqa: BLE001
        Path(tmp).unlink(missing_ok=True)
        raise SourceError(f"cannot download {path.uri}: {_short(error)}") from error
    return destination


def upload_file(client, source: Path, path: GcsPath, content_type: str | None = None) -> None:
    """Upload and verify: the object's CRC32C must equal the local file's, else the object is deleted."""
    blob = client.bucket(path.bucket).blob(path.name)
    try:
        blob.upload_from_filename(str(source), content_type=content_type, checksum="crc32c")
        blob.reload()
    except Exception as error:  # noqa: BLE001
        raise SourceError(f"cannot upload {source} to {path.uri}: {_short(error)}") from error
    expected = crc32c_base64(source)
    if blob.crc32c and blob.crc32c != expected:
        blob.delete()
        raise SourceError(f"upload of {source} to {path.uri} is corrupt: crc32c {blob.crc32c} != {expected}")


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
