"""Read a small input file (labels CSV, duplicates list) from a local path, gs:// or http(s)://."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from mmft_storage import gcs

from .errors import ConfigError, SourceError

HTTP_TIMEOUT_SECONDS = 60


def read_text(location: str) -> str:
    if gcs.is_gcs_uri(location):
        try:
            data = gcs.download_bytes(gcs.make_client(), gcs.parse_gcs_uri(location))
        except (gcs.ObjectNotFound, gcs.InvalidGcsUri) as error:
            raise ConfigError(str(error)) from error
        except gcs.StorageError as error:
            raise SourceError(str(error)) from error
    elif location.startswith(("http://", "https://")):
        data = _http_get(location)
    else:
        path = Path(location)
        if not path.is_file():
            raise ConfigError(f"file not found: {location}")
        data = path.read_bytes()
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark that would corrupt the first header.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{location} is not UTF-8 text: {error}") from error


def _http_get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code in (403, 404, 410):
            raise ConfigError(f"cannot read {url}: HTTP {error.code} {error.reason}") from error
        raise SourceError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        raise SourceError(f"cannot download {url}: {error}") from error
