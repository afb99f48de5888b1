"""``gs://`` inputs and outputs: evaluation files, images and adapters are fetched to a local cache; the output
directory is uploaded after the run. Local paths pass through untouched, so tests and mounted volumes need no GCS.
``STORAGE_EMULATOR_HOST`` is honoured by google-cloud-storage, which is how tests run against an emulator."""

from __future__ import annotations

import os
from pathlib import Path


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket name")
    return bucket, prefix.strip("/")


_clients: dict[int, object] = {}


def _client():
    # One client per process: DataLoader workers are forked, and an HTTP session must not be shared across a fork.
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = _new_client()
    return _clients[pid]


def _new_client():
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "local")
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()


def _cache_path(cache_dir: Path, uri: str) -> Path:
    bucket, name = split_gcs(uri)
    return cache_dir / bucket / name


def fetch_file(uri: str, cache_dir: Path) -> Path:
    if not is_gcs(uri):
        return Path(uri)
    target = _cache_path(cache_dir, uri)
    if not target.exists():
        bucket, name = split_gcs(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = _client().bucket(bucket).blob(name)
        if not blob.exists():
            raise FileNotFoundError(f"{uri} does not exist")
        partial = target.with_name(target.name + ".partial")
        blob.download_to_filename(str(partial))
        partial.replace(target)
    return target


def fetch_tree(uri: str, cache_dir: Path) -> Path:
    """A directory (model or adapter) under a ``gs://`` prefix, downloaded file by file into the cache."""
    if not is_gcs(uri):
        return Path(uri)
    bucket_name, prefix = split_gcs(uri)
    target = _cache_path(cache_dir, uri)
    blobs = [blob for blob in _client().list_blobs(bucket_name, prefix=prefix + "/") if not blob.name.endswith("/")]
    if not blobs:
        raise FileNotFoundError(f"{uri} holds no files")
    for blob in blobs:
        destination = target / blob.name[len(prefix) + 1:]
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(destination))
    return target


def upload_tree(local_dir: Path, uri: str) -> dict[Path, str]:
    """Uploads every file under ``local_dir``; returns each local file's ``gs://`` URI."""
    bucket_name, prefix = split_gcs(uri)
    bucket = _client().bucket(bucket_name)
    uploaded: dict[Path, str] = {}
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        name = "/".join(part for part in (prefix, path.relative_to(local_dir).as_posix()) if part)
        bucket.blob(name).upload_from_filename(str(path))
        uploaded[path] = f"gs://{bucket_name}/{name}"
    return uploaded
