"""mmft_storage.gcs, the workloads' one Cloud Storage helper, against a real GCS JSON API (gcp-storage-emulator)."""

from __future__ import annotations

import os

import pytest
from gcs_emulator import gcs_emulator  # noqa: F401 - the fixture
from mmft_storage import gcs


@pytest.fixture
def storage(gcs_emulator, monkeypatch):  # noqa: F811 - pytest fixture injection
    monkeypatch.setenv(gcs.EMULATOR_ENV, gcs_emulator)
    return gcs.make_client()


def test_checked_upload_and_download_round_trip(storage, tmp_path):
    storage.create_bucket("roundtrip")
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(700_000))
    target = gcs.parse_gcs_uri("gs://roundtrip/dir/blob.bin")
    gcs.upload_file(storage, source, target)
    assert storage.bucket("roundtrip").get_blob("dir/blob.bin").crc32c == gcs.crc32c_base64(source)
    assert gcs.download_bytes(storage, target) == source.read_bytes()
    copy = gcs.download_file(storage, target, tmp_path / "copy" / "blob.bin")
    assert copy.read_bytes() == source.read_bytes()
    assert gcs.list_objects(storage, gcs.parse_gcs_uri("gs://roundtrip/dir")) == [("dir/blob.bin", 700_000)]
    with pytest.raises(gcs.ObjectNotFound, match="gs://roundtrip/absent"):
        gcs.download_bytes(storage, gcs.parse_gcs_uri("gs://roundtrip/absent"))
    with pytest.raises(FileNotFoundError, match="gs://roundtrip/absent"):  # as a missing local input would
        gcs.download_file(storage, gcs.parse_gcs_uri("gs://roundtrip/absent"), tmp_path / "absent")
    assert not list((tmp_path).glob(".absent*")), "a failed download leaves no partial file"


def test_a_directory_goes_up_verified_and_comes_back_through_the_cache(storage, tmp_path):
    storage.create_bucket("trees")
    local = tmp_path / "adapter"
    (local / "sub").mkdir(parents=True)
    (local / "adapter_model.safetensors").write_bytes(os.urandom(300_000))
    (local / "adapter_config.json").write_text('{"r": 4}')
    (local / "sub" / "skipped.bin").write_bytes(b"x")

    uploaded = gcs.upload_directory(storage, local, "gs://trees/runs/one/adapter/",
                                    skip=lambda path: path.name == "skipped.bin")
    assert uploaded == {
        local / "adapter_config.json": "gs://trees/runs/one/adapter/adapter_config.json",
        local / "adapter_model.safetensors": "gs://trees/runs/one/adapter/adapter_model.safetensors",
    }
    for path, uri in uploaded.items():
        blob = storage.bucket("trees").get_blob(gcs.parse_gcs_uri(uri).name)
        assert blob.crc32c == gcs.crc32c_base64(path)

    cache = tmp_path / "cache"
    tree = gcs.fetch_tree("gs://trees/runs/one/adapter", cache)
    assert tree == cache / "trees" / "runs/one/adapter"
    assert sorted(p.name for p in tree.rglob("*") if p.is_file()) == ["adapter_config.json",
                                                                      "adapter_model.safetensors"]
    assert (tree / "adapter_model.safetensors").read_bytes() == (local / "adapter_model.safetensors").read_bytes()
    single = gcs.fetch_file("gs://trees/runs/one/adapter/adapter_config.json", cache)
    assert single.read_text() == '{"r": 4}'
    # Local paths pass through untouched; an empty prefix or a missing object is a FileNotFoundError.
    assert gcs.fetch_file(str(local / "adapter_config.json"), cache) == local / "adapter_config.json"
    with pytest.raises(FileNotFoundError, match="holds no files"):
        gcs.fetch_tree("gs://trees/runs/none", cache)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gcs.fetch_file("gs://trees/runs/none/x.json", cache)


def test_errors_name_the_object_and_bad_uris_are_refused(storage, tmp_path):
    from google.api_core.exceptions import NotFound

    # An upload's failure is the API's own (the trainer reports "export to ... failed: NotFound: ...").
    with pytest.raises(NotFound, match="no-such-bucket"):
        gcs.upload_file(storage, _file(tmp_path), gcs.GcsPath("no-such-bucket", "x"))
    with pytest.raises(gcs.StorageError, match="gs://no-such-bucket/"):
        gcs.list_objects(storage, gcs.GcsPath("no-such-bucket", "x"))
    for bad in ("s3://bucket/x", "gs://", "/local/path"):
        with pytest.raises(gcs.InvalidGcsUri):
            gcs.parse_gcs_uri(bad)
    assert gcs.parse_gcs_uri("gs://bucket/a/b/") == gcs.GcsPath("bucket", "a/b/")
    assert gcs.parse_gcs_uri("gs://bucket/a/b/").child("c.json").uri == "gs://bucket/a/b/c.json"
    assert gcs.parse_gcs_uri("gs://bucket").child("c.json").uri == "gs://bucket/c.json"


def _file(tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("small")
    return path


def test_one_cloud_storage_helper_for_the_workloads():
    # The google.cloud.storage client is made in one module: a second helper would drift (checksums, emulator).
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    users = sorted(str(path.relative_to(root)) for folder in ("dataprep", "trainer", "evaluator", "storage")
                   for path in (root / folder).rglob("*.py") if "google.cloud" in path.read_text())
    assert users == ["storage/mmft_storage/gcs.py"]
