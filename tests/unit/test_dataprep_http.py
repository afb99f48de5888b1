"""Resumable HTTP downloads against a local server with Range support, and zip archives as image sources."""

from __future__ import annotations

import hashlib
import os

import pytest
from dataprep_fixtures import RangeServer
from mmft_dataprep import http_download
from mmft_dataprep.errors import SourceError


@pytest.fixture
def server():
    with RangeServer() as running:
        yield running


def test_interrupted_download_resumes_from_where_it_stopped(server, tmp_path):
    payload = os.urandom(3 * http_download.CHUNK_BYTES + 12345)
    server.files["/big.zip"] = payload
    destination = tmp_path / "big.zip"
    half = len(payload) // 2
    server.cut_next_response_after = half

    with pytest.raises(SourceError, match="bytes kept"):
        http_download.download(server.url + "/big.zip", destination, retries=0)
    part = tmp_path / "big.zip.part"
    assert part.stat().st_size == half and not destination.exists()

    http_download.download(server.url + "/big.zip", destination, retries=0)
    assert destination.read_bytes() == payload and not part.exists()
    assert server.requests[-1] == ("/big.zip", f"bytes={half}-", len(payload) - half)


def test_retries_resume_within_one_call(server, tmp_path):
    payload = os.urandom(500_000)
    server.files["/a.bin"] = payload
    server.cut_next_response_after = 100_000
    http_download.download(server.url + "/a.bin", tmp_path / "a.bin", retries=2, backoff_seconds=0)
    assert (tmp_path / "a.bin").read_bytes() == payload
    assert [r[1] for r in server.requests] == [None, "bytes=100000-"]


def test_changed_remote_file_restarts_from_zero(server, tmp_path):
    server.files["/c.bin"] = b"x" * 200_000
    server.cut_next_response_after = 50_000
    with pytest.raises(SourceError):
        http_download.download(server.url + "/c.bin", tmp_path / "c.bin", retries=0)
    server.files["/c.bin"] = b"y" * 180_000  # new ETag: If-Range fails, the server sends everything
    http_download.download(server.url + "/c.bin", tmp_path / "c.bin", retries=0)
    assert (tmp_path / "c.bin").read_bytes() == b"y" * 180_000


def test_sha256_in_the_url_fragment_is_verified(server, tmp_path):
    payload = b"archive bytes" * 1000
    server.files["/d.zip"] = payload
    good = hashlib.sha256(payload).hexdigest()
    http_download.download(f"{server.url}/d.zip#sha256={good}", tmp_path / "good.zip")
    assert (tmp_path / "good.zip").read_bytes() == payload
    with pytest.raises(SourceError, match="does not match"):
        http_download.download(f"{server.url}/d.zip#sha256={'0' * 64}", tmp_path / "bad.zip")
    assert not (tmp_path / "bad.zip").exists()


def test_missing_remote_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(SourceError, match="HTTP 404"):
        http_download.download(server.url + "/nope.zip", tmp_path / "nope.zip", retries=3, backoff_seconds=0)

