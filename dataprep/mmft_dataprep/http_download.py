"""Resumable, verified HTTP(S) downloads (the ISIC zip archives are ~25 GB; a dropped connection must not
restart them).

The partial file ``NAME.part`` grows by ``Range`` requests; ``NAME.part.json`` keeps the server's validator
(ETag or Last-Modified) so that ``If-Range`` restarts from zero if the remote file changed meanwhile. The file
is renamed to ``NAME`` only after its size matches the server's and, when the URL carries ``#sha256=HEX``,
its SHA-256 matches.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import SourceError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def archive_file_name(url: str) -> str:
    name = Path(urllib.parse.urlsplit(url).path).name
    return name or "download"


def expected_sha256(url: str) -> str | None:
    fragment = urllib.parse.urlsplit(url).fragment
    match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
    return match.group(1).lower() if match else None


def download(url: str, destination: Path, retries: int = 5, backoff_seconds: float = 2.0,
             on_progress=None) -> Path:
    """Download ``url`` to ``destination``, resuming a previous partial download; returns the path."""
    if destination.exists():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    state_file = destination.with_name(destination.name + ".part.json")
    fetch_url = urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(fragment=""))
    total = None
    for attempt in range(retries + 1):
        try:
            total = _fetch_remaining(fetch_url, part, state_file, on_progress)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            if isinstance(error, urllib.error.HTTPError) and error.code not in (408, 429, 500, 502, 503, 504):
                raise SourceError(f"cannot download {fetch_url}: HTTP {error.code} {error.reason}") from error
            if attempt == retries:
                raise SourceError(f"cannot download {fetch_url} after {retries + 1} attempts: {error}; "
                                  f"{_size(part)} bytes kept in {part} for the next run") from error
            log.warning("download of %s interrupted at %d bytes (%s); resuming", fetch_url, _size(part), error)
            time.sleep(backoff_seconds * (2**attempt))
    _verify(url, part, total)
    os.replace(part, destination)
    state_file.unlink(missing_ok=True)
    return destination


def _fetch_remaining(url: str, part: Path, state_file: Path, on_progress) -> int:
    offset = _size(part)
    state = _read_state(state_file)
    headers = {}
    if offset and state.get("validator"):
        headers = {"Range": f"bytes={offset}-", "If-Range": state["validator"]}
    elif offset:
        # Without a validator a resumed range could splice two versions of the file: start over.
        offset = 0
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset and state.get("total") == offset:
            return offset  # already complete
        raise
    with response:
        if response.status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise SourceError(f"{url}: server answered range {response.headers.get('Content-Range')!r} "
                                  f"to a request from byte {offset}")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        else:
            if offset:
                log.info("%s changed or ignores ranges; downloading from the start", url)
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            mode = "wb"
        validator = _strong_validator(response.headers)
        _write_state(state_file, {"validator": validator, "total": total})
        with open(part, mode) as handle:
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                if on_progress:
                    on_progress(handle.tell(), total)
    received = _size(part)
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return received if total is None else total


def _verify(url: str, part: Path, total: int | None) -> None:
    if total is not None and _size(part) != total:
        raise SourceError(f"{url}: downloaded {_size(part)} bytes, the server announced {total}")
    want = expected_sha256(url)
    if want:
        digest = hashlib.sha256()
        with open(part, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(chunk)
        if digest.hexdigest() != want:
            part.unlink()
            raise SourceError(f"{url}: SHA-256 {digest.hexdigest()} does not match the expected {want}; "
                              "the partial file was removed")


def _strong_validator(headers) -> str | None:
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _read_state(state_file: Path) -> dict:
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state_file: Path, state: dict) -> None:
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, state_file)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
