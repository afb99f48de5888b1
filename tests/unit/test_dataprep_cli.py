"""`mmft dataprep` end to end through the real CLI dispatcher: outputs, report, exit codes, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataprep_fixtures import SmallDataset, write_jpeg
from mmft_dataprep import outputs
from mmft_operator.cli import main as mmft
from mmft_operator.contracts.exit_codes import CONFIG_INVALID, DATA_INVALID
from mmft_operator.contracts.progress import WorkloadReport
from PIL import Image

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return SmallDataset(tmp_path_factory.mktemp("isic"))


@pytest.fixture
def report_file(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    monkeypatch.setenv("MMFT_REPORT_FILE", str(path))
    monkeypatch.delenv("MMFT_REPORT_CONFIGMAP", raising=False)
    return path


def run_dataprep(dataset: SmallDataset, output: Path, *extra: str) -> int:
    return mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-dir", str(dataset.images_dir),
                 "--output-dir", str(output), "--image-size", "48", *extra])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_full_run_writes_split_jsonl_images_stats_and_report(dataset, tmp_path, report_file):
    output = tmp_path / "out"
    prefix = "/mnt/gcs/prepared/images"
    code = run_dataprep(dataset, output, "--image-path-prefix", prefix, "--workers", "2",
                        "--duplicates-csv", str(dataset.duplicates_csv))
    assert code == 0

    patient_of = {r.image: r.group for r in dataset.records}
    label_of = {r.image: r.label for r in dataset.records}
    patients_by_split, images_by_split = {}, {}
    for split in SPLITS:
        lines = read_jsonl(output / f"{split}.jsonl")
        system, user, assistant = (message for message in lines[0]["messages"])
        assert system["role"] == "system" and "dermatology assistant" in system["content"][0]["text"]
        assert user["content"][1] == {"type": "text", "text": "Does this appear to be malignant melanoma?"}
        images = []
        for line in lines:
            image_item, _question = line["messages"][1]["content"]
            assert image_item["type"] == "image" and image_item["path"].startswith(prefix + "/")
            name = Path(image_item["path"]).stem
            expected = "Yes" if label_of[name] else "No"
            assert line["messages"][2]["content"][0]["text"].startswith(expected)
            with Image.open(output / "images" / Path(image_item["path"]).name) as written:
                assert written.format == "JPEG" and max(written.size) == 48 and written.mode == "RGB"
            images.append(name)
        images_by_split[split] = images
        patients_by_split[split] = {patient_of[name] for name in images}
        assert any(label_of[name] for name in images), f"no positive in {split}"
    assert not patients_by_split["train"] & patients_by_split["validation"]
    assert not patients_by_split["train"] & patients_by_split["test"]
    assert not patients_by_split["validation"] & patients_by_split["test"]
    assert sorted(sum(images_by_split.values(), [])) == sorted(r.image for r in dataset.usable)

    stats = json.loads((output / "stats.json").read_text())
    reasons = {item["image"]: item["reason"] for item in stats["dropped"]["items"]}
    assert reasons == {dataset.corrupt: "corrupt", dataset.unreadable: "unreadable", dataset.missing: "missing_file",
                       dataset.repeated: "duplicate_row", dataset.listed_duplicate: "listed_duplicate"}
    for split in SPLITS:
        assert stats["splits"][split]["images"] == len(images_by_split[split])
        assert stats["splits"][split]["patients"] == len(patients_by_split[split])
    assert stats["images"]["written"] == len(dataset.usable) and stats["images"]["imagesPerSecond"] > 0

    report = WorkloadReport.from_json(report_file.read_text())
    assert report.phase == "Completed"
    assert report.outputs == {"trainJsonl": str(output / "train.jsonl"),
                              "validationJsonl": str(output / "validation.jsonl"),
                              "testJsonl": str(output / "test.jsonl"), "statsJson": str(output / "stats.json"),
                              "imagesDir": prefix}
    # The report carries stats.json's counts of every split, in the API's names (status.results).
    assert {name: {"images": split["images"], "positives": split["positive"], "negatives": split["negative"],
                   "groups": split["patients"], "lines": split["lines"], "linesPositive": split["linesPositive"]}
            for name, split in stats["splits"].items()} == report.results["splits"]
    assert report.results["dropped"] == 5


def test_rerun_reuses_finished_images_and_new_settings_redo_them(dataset, tmp_path, report_file):
    output = tmp_path / "out"
    assert run_dataprep(dataset, output) == 0
    first = (output / "train.jsonl").read_text()
    assert run_dataprep(dataset, output) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["images"]["written"] == 0 and stats["images"]["reused"] == len(dataset.records) - 3
    assert (output / "train.jsonl").read_text() == first

    assert run_dataprep(dataset, output, "--image-size", "32") == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["images"]["written"] == len(dataset.records) - 3 and stats["images"]["reused"] == 0
    with Image.open(next((output / "images").glob("*.jpg"))) as resized:
        assert max(resized.size) == 32


def test_crash_while_writing_jsonl_leaves_the_previous_file_whole(dataset, tmp_path, report_file, monkeypatch):
    output = tmp_path / "out"
    assert run_dataprep(dataset, output) == 0
    before = (output / "train.jsonl").read_text()
    calls = {"count": 0}
    real_example = outputs.chat_example

    def failing_example(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 10:
            raise RuntimeError("simulated crash mid-file")
        return real_example(*args, **kwargs)

    monkeypatch.setattr("mmft_dataprep.pipeline.chat_example", failing_example)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_dataprep(dataset, output, "--question", "Another question?")
    assert (output / "train.jsonl").read_text() == before
    assert not list(output.glob(".*.tmp"))
    assert WorkloadReport.from_json(report_file.read_text()).phase == "Failed"


def test_temporaries_of_a_killed_run_are_removed(dataset, tmp_path, report_file):
    output = tmp_path / "out"
    (output / "images").mkdir(parents=True)
    killed = [output / ".train.jsonl.abc123.tmp", output / "images" / ".ISIC_1.jpg.xyz.tmp"]
    for path in killed:
        path.write_text("half a file")
    assert run_dataprep(dataset, output) == 0
    assert not any(path.exists() for path in killed)


def test_balance_applies_to_train_lines_only(dataset, tmp_path, report_file):
    output = tmp_path / "out"
    assert run_dataprep(dataset, output, "--balance", "undersample") == 0
    stats = json.loads((output / "stats.json").read_text())
    train = stats["splits"]["train"]
    assert train["lines"] == 2 * train["positive"] == 2 * train["linesPositive"]
    assert len(read_jsonl(output / "train.jsonl")) == train["lines"]
    validation = stats["splits"]["validation"]
    assert len(read_jsonl(output / "validation.jsonl")) == validation["images"] == validation["lines"]


@pytest.mark.parametrize("extra, message", [
    (("--label-column", "diagnosis_code"), "'diagnosis_code' (--label-column) is not in the CSV header"),
    (("--train-fraction", "0.7"), "must sum to 1"),
    (("--image-size", "4"), "--image-size"),
])
def test_bad_configuration_exits_78_with_a_named_reason(dataset, tmp_path, report_file, extra, message):
    assert run_dataprep(dataset, tmp_path / "out", *extra) == CONFIG_INVALID
    report = WorkloadReport.from_json(report_file.read_text())
    assert report.phase == "Failed" and message in report.message


def test_inputs_are_never_overwritten(dataset, tmp_path, report_file):
    assert mmft(["dataprep", "--labels-csv", str(dataset.labels_csv), "--images-dir", str(dataset.images_dir),
                 "--output-dir", str(dataset.root)]) == CONFIG_INVALID
    assert "--images-dir" in WorkloadReport.from_json(report_file.read_text()).message
    foreign = tmp_path / "out" / "images" / "holiday.jpg"
    write_jpeg(foreign, 16, 16, seed=1)
    assert run_dataprep(dataset, tmp_path / "out") == CONFIG_INVALID
    assert "did not write" in WorkloadReport.from_json(report_file.read_text()).message and foreign.exists()


def test_no_usable_images_exits_65(tmp_path, report_file):
    labels = tmp_path / "labels.csv"
    labels.write_text("image_name,patient_id,target\nISIC_1,P1,0\nISIC_2,P2,1\n")
    write_jpeg(tmp_path / "images" / "ISIC_unlabelled.jpg", 32, 32, seed=1)
    (tmp_path / "images" / "ISIC_2.jpg").write_text("not an image")
    code = mmft(["dataprep", "--labels-csv", str(labels), "--images-dir", str(tmp_path / "images"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == DATA_INVALID
    assert "could be used" in WorkloadReport.from_json(report_file.read_text()).message


def test_empty_image_source_exits_78_naming_it(tmp_path, report_file):
    labels = tmp_path / "labels.csv"
    labels.write_text("image_name,patient_id,target\nISIC_1,P1,0\n")
    (tmp_path / "empty").mkdir()
    code = mmft(["dataprep", "--labels-csv", str(labels), "--images-dir", str(tmp_path / "empty"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == CONFIG_INVALID
    assert f"--images-dir {tmp_path / 'empty'}" in WorkloadReport.from_json(report_file.read_text()).message


def test_too_few_patients_for_three_splits_exits_65(tmp_path, report_file):
    records = [("ISIC_1", "P1", 0), ("ISIC_2", "P1", 1), ("ISIC_3", "P2", 0)]
    labels = tmp_path / "labels.csv"
    labels.write_text("image_name,patient_id,target\n" + "".join(f"{a},{b},{c}\n" for a, b, c in records))
    for index, (name, _, _) in enumerate(records):
        write_jpeg(tmp_path / "images" / f"{name}.jpg", 32, 32, seed=index)
    code = mmft(["dataprep", "--labels-csv", str(labels), "--images-dir", str(tmp_path / "images"),
                 "--output-dir", str(tmp_path / "out")])
    assert code == DATA_INVALID
    assert "split came out empty" in WorkloadReport.from_json(report_file.read_text()).message


def test_csv_with_byte_order_mark_and_custom_columns(tmp_path, report_file):
    rows = [(f"img{i}.png", "malignant" if i % 4 == 0 else "benign", f"s{i // 2}") for i in range(40)]
    labels = tmp_path / "labels.csv"
    labels.write_bytes(("\ufefffile,diagnosis,subject\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
                       .encode("utf-8"))
    for index, (name, _, _) in enumerate(rows):
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.new("RGB", (40, 30), (index * 5, 100, 100)).save(tmp_path / "images" / name)
    code = mmft(["dataprep", "--labels-csv", str(labels), "--images-dir", str(tmp_path / "images"),
                 "--output-dir", str(tmp_path / "out"), "--image-column", "file", "--label-column", "diagnosis",
                 "--group-column", "subject", "--positive-value", "malignant", "--positive-answer", "Malignant.",
                 "--negative-answer", "Benign."])
    assert code == 0
    lines = [line for split in SPLITS for line in read_jsonl(tmp_path / "out" / f"{split}.jsonl")]
    answers = [line["messages"][2]["content"][0]["text"] for line in lines]
    assert answers.count("Malignant.") == 10 and answers.count("Benign.") == 30
    image_paths = sorted(Path(line["messages"][1]["content"][0]["path"]) for line in lines)
    assert [path.name for path in image_paths] == sorted(f"img{i}.jpg" for i in range(40))
    assert all(path.exists() for path in image_paths)


def test_module_imports_only_the_standard_library():
    import subprocess
    import sys

    probe = ("import sys, mmft_dataprep.cli; "
             "print(sorted(m for m in ('PIL', 'numpy', 'google.cloud.storage', 'pydantic') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
