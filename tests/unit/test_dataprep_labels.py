"""Labels CSV parsing: ISIC v1/v2 headers, column mapping, rows that cannot be used."""

from __future__ import annotations

import pytest
from dataprep_fixtures import ISIC_HEADER, isic_csv_text, isic_shaped_records
from mmft_dataprep.errors import ConfigError
from mmft_dataprep.labels import parse_duplicates, parse_labels
from mmft_dataprep.options import ColumnMapping


def test_isic_v1_and_v2_headers_parse_to_the_same_records():
    records = isic_shaped_records(patients=20, images=120, positives=9, seed=1)
    v1, dropped_v1 = parse_labels(isic_csv_text(records), ColumnMapping(), "v1.csv")
    v2, dropped_v2 = parse_labels(isic_csv_text(records, ISIC_HEADER[:2] + ["lesion_id"] + ISIC_HEADER[2:]),
                                  ColumnMapping(), "v2.csv")
    assert [(r.image, r.label, r.group) for r in v1] == [(r.image, r.label, r.group) for r in records]
    assert [(r.image, r.label, r.group) for r in v2] == [(r.image, r.label, r.group) for r in v1]
    assert dropped_v1 == dropped_v2 == []


def test_missing_column_names_the_column_and_the_flag():
    text = "image_name,target\nISIC_1,0\n"
    with pytest.raises(ConfigError, match=r"'patient_id' \(--group-column\) is not in the CSV header"):
        parse_labels(text, ColumnMapping(), "labels.csv")


def test_custom_mapping_with_text_labels_and_a_padded_header():
    text = "file , diagnosis,subject\nA.png,malignant,s1\nB.png,Benign,s1\nC.png,MALIGNANT,s2\n"
    records, dropped = parse_labels(text, ColumnMapping("file", "diagnosis", "subject", "malignant"), "x.csv")
    assert [(r.image, r.label, r.group) for r in records] == [("A.png", 1, "s1"), ("B.png", 0, "s1"),
                                                             ("C.png", 1, "s2")]
    assert dropped == []


def test_numeric_positive_value_matches_float_spelling():
    records, _ = parse_labels("image_name,target,patient_id\na,1.0,p\nb,0.0,p\n", ColumnMapping(), "x.csv")
    assert [r.label for r in records] == [1, 0]


def test_bad_rows_are_dropped_with_reason_and_line():
    text = ("image_name,patient_id,target\n"
            "ISIC_1,P1,0\n"
            "ISIC_1,P1,1\n"
            "ISIC_2,P2,\n"
            "ISIC_3,,1\n"
            ",P4,0\n")
    records, dropped = parse_labels(text, ColumnMapping(), "gt.csv")
    assert [r.image for r in records] == ["ISIC_1"]
    assert [(d.image, d.reason) for d in dropped] == [
        ("ISIC_1", "duplicate_row"), ("ISIC_2", "missing_label"), ("ISIC_3", "missing_group"),
        ("<line 6>", "missing_image_name")]
    assert "gt.csv line 3 repeats line 2" in dropped[0].detail


def test_without_group_column_each_image_is_its_own_group():
    records, _ = parse_labels("image_name,target\na,1\nb,0\n", ColumnMapping(group=""), "x.csv")
    assert [r.group for r in records] == ["a", "b"]


def test_duplicates_list_drops_the_second_image_of_each_pair():
    text = "image_name_1,image_name_2\nISIC_1,ISIC_2\nISIC_3,ISIC_4\n"
    assert parse_duplicates(text, "dups.csv") == {"ISIC_2": "ISIC_1", "ISIC_4": "ISIC_3"}
    with pytest.raises(ConfigError, match="two columns"):
        parse_duplicates("only_one\nx\n", "dups.csv")
