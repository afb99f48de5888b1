"""Uploads a directory to ``gs://BUCKET/PREFIX`` with resumable uploads and CRC32C verification.

``STORAGE_EMULATOR_HOST`` (honoured by google-cloud-storage) points the client at an emulator in tests.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Any file larger than one chunk goes up in resumable chunks that survive a dropped connection; the chunk size
# must be a multiple of 256 KiB.
RESUMABLE_CHUNK_BYTES = 16 * 1024 * 1024


class UploadError(RuntimeError):
    pass


def parse_gs_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("gs://") or len(uri) <= len("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix.strip("/")


def crc32c_base64(path: Path) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode()


def upload_directory(local_dir: Path, uri: str, client=None, skip=lambda path: False) -> dict[str, str]:
    """Upload every file under ``local_dir`` (except those ``skip`` rejects); return object name -> CRC32C."""
    from google.cloud import storage

    client = client or storage.Client()
    bucket_name, prefix = parse_gs_uri(uri)
    bucket = client.bucket(bucket_name)
    uploaded = {}
    for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file() and not skip(p)):
        name = "/".join(part for part in (prefix, path.relative_to(local_dir).as_posix()) if part)
        expected = crc32c_base64(path)
        blob = bucket.blob(name, chunk_size=RESUMABLE_CHUNK_BYTES)
        # checksum="crc32c" makes the client compare its own hash with the one the server computed.
        blob.upload_from_filename(str(path), checksum="crc32c")
        blob.reload()
        if blob.crc32c != expected:
            raise UploadError(f"checksum mismatch for gs://{bucket_name}/{name}: local {expected}, "
                              f"stored {blob.crc32c}")
        uploaded[name] = expected
        log.info("uploaded gs://%s/%s (%d bytes, crc32c %s)", bucket_name, name, path.stat().st_size, expected)
    return uploaded
