"""docs/install.md's DatasetPrep source block is valid against the API it describes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from mmft_operator.api.datasetprep import DatasetPrepSpec

ROOT = Path(__file__).resolve().parents[2]


def test_the_download_source_in_the_install_guide_is_a_valid_datasetprep_source():
    text = (ROOT / "docs/install.md").read_text()
    block = re.search(r"```yaml\n(  source:\n.*?)```", text, re.DOTALL).group(1)
    sample = yaml.safe_load((ROOT / "deploy/samples/gemma3-melanoma/datasetprep.yaml").read_text())
    sample["spec"].update(yaml.safe_load(block))
    spec = DatasetPrepSpec.model_validate(sample["spec"])
    assert spec.source.archive_urls == ["https://isic-challenge-data.s3.amazonaws.com/2020/ISIC_2020_Training_JPEG.zip"]
    assert spec.source.labels_csv.endswith("ISIC_2020_Training_GroundTruth_v2.csv")
