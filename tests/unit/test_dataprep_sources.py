"""Remote sources end to end: gs:// through a real GCS JSON API emulator, zip archives over HTTP."""

from __future__ import annotations

import json

import pytest
from dataprep_fixtures import RangeServer, SmallDataset, zip_bytes
from gcs_emulator import gcs_emulator  # noqa: F401 - the fixture
from mmft_operator.cli import main as mmft
from mmft_operator.contracts.exit_codes import CONFIG_INVALID
from mmft_storage import gcs

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return SmallDataset(tmp_path_factory.mktemp("isic"), patients=12, images=60, positives=9)


@pytest.fixture
def storage(gcs_emulator, monkeypatch):  # noqa: F811 - pytest fixture injection
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return gcs.make_client()


def split_lines(output) -> dict[str, list[str]]:
    return {split: (output / f"{split}.jsonl").read_text().splitlines() for split in SPLITS}


def local_reference(dataset, tmp_path) -> dict[str, list[str]]:
    output = tmp_path / "local"
    assert mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-dir", str(dataset.images_dir),
                 "--output-dir", str(output), "--image-path-prefix", "/data/images", "--workers", "1"]) == 0
    return split_lines(output)


def test_gcs_labels_and_images_give_the_same_dataset_as_local_files(dataset, storage, tmp_path, monkeypatch):
    monkeypatch.delenv("MMFT_REPORT_FILE", raising=False)
    storage.create_bucket("isic")
    gcs.upload_file(storage, dataset.labels_csv, gcs.parse_gcs_uri("gs://isic/ground_truth.csv"))
    for path in sorted(dataset.images_dir.iterdir()):
        gcs.upload_file(storage, path, gcs.parse_gcs_uri(f"gs://isic/train/{path.name}"))

    output = tmp_path / "from-gcs"
    code = mmft(["dataprep", "--labels-csv", "gs://isic/ground_truth.csv", "--images-dir", "gs://isic/train",
                 "--output-dir", str(output), "--image-path-prefix", "/data/images", "--workers", "2"])
    assert code == 0
    assert split_lines(output) == local_reference(dataset, tmp_path)
    reasons = {item["image"]: item["reason"]
               for item in json.loads((output / "stats.json").read_text())["dropped"]["items"]}
    assert reasons[dataset.corrupt] == "corrupt" and reasons[dataset.missing] == "missing_file"


def test_missing_gcs_labels_csv_is_a_configuration_error(storage, tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(report))
    storage.create_bucket("nolabels")
    (tmp_path / "images").mkdir()
    code = mmft(["dataprep", "--labels-csv", "gs://nolabels/absent.csv", "--images-dir", str(tmp_path / "images"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == CONFIG_INVALID
    assert "gs://nolabels/absent.csv does not exist" in json.loads(report.read_text())["message"]


def test_zip_archive_over_http_with_a_damaged_member(dataset, tmp_path, monkeypatch):
    monkeypatch.delenv("MMFT_REPORT_FILE", raising=False)
    members = {f"ISIC_2020_Training_JPEG/train/{name}": data for name, data in dataset.jpeg_bytes().items()}
    archive = bytearray(zip_bytes(members))
    damaged = dataset.usable[0].image
    data = members[f"ISIC_2020_Training_JPEG/train/{damaged}.jpg"]
    offset = bytes(archive).find(data) + len(data) // 2
    archive[offset] ^= 0xFF  # the member's CRC no longer matches
    with RangeServer() as server:
        server.files["/ISIC_2020_Training_JPEG.zip"] = bytes(archive)
        output = tmp_path / "from-zip"
        code = mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-archive-url",
                     server.url + "/ISIC_2020_Training_JPEG.zip", "--download-dir", str(tmp_path / "downloads"),
                     "--output-dir", str(output), "--image-path-prefix", "/data/images", "--workers", "1"])
    assert code == 0
    assert (tmp_path / "downloads" / "ISIC_2020_Training_JPEG.zip").stat().st_size == len(archive)
    stats = json.loads((output / "stats.json").read_text())
    reasons = {item["image"]: item for item in stats["dropped"]["items"]}
    assert reasons[damaged]["reason"] == "corrupt" and "CRC" in reasons[damaged]["detail"]
    reference = local_reference(dataset, tmp_path)
    from_zip = split_lines(output)
    assert sum(len(lines) for lines in from_zip.values()) == sum(len(lines) for lines in reference.values()) - 1
