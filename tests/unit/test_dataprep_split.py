"""Split invariants of the group-aware stratified split on ISIC-shaped data (2,056 patients, 584 positives)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from dataprep_fixtures import isic_shaped_records
from mmft_dataprep.labels import LabelRecord
from mmft_dataprep.splitting import assign_groups, balance_train

FRACTIONS = (0.8, 0.1, 0.1)


@pytest.fixture(scope="module")
def isic_records():
    return isic_shaped_records(seed=7)


def _split_counts(records, assignment):
    images, positives = Counter(), Counter()
    for record in records:
        images[assignment[record.group]] += 1
        positives[assignment[record.group]] += record.label
    return images, positives


def test_every_patient_lands_in_exactly_one_split(isic_records):
    assignment = assign_groups(isic_records, FRACTIONS, seed=42)
    splits_of_patient = defaultdict(set)
    for record in isic_records:
        splits_of_patient[record.group].add(assignment[record.group])
    assert set(assignment) == {record.group for record in isic_records}
    assert all(len(splits) == 1 for splits in splits_of_patient.values())


@pytest.mark.parametrize("seed", [0, 42, 1234])
def test_images_and_positives_follow_the_fractions(isic_records, seed):
    assignment = assign_groups(isic_records, FRACTIONS, seed=seed)
    images, positives = _split_counts(isic_records, assignment)
    total_images, total_positives = len(isic_records), sum(r.label for r in isic_records)
    largest_positive_group = max(Counter(r.group for r in isic_records if r.label).values())
    for split, fraction in enumerate(FRACTIONS):
        assert abs(images[split] / total_images - fraction) < 0.005, (split, images)
        # Positives come in patient-sized lumps; a split may miss its target by at most one lump.
        assert abs(positives[split] - fraction * total_positives) <= largest_positive_group, (split, positives)
        assert positives[split] > 0


def test_split_is_deterministic_and_independent_of_row_order(isic_records):
    shuffled = list(isic_records)
    random.Random(3).shuffle(shuffled)
    first = assign_groups(isic_records, FRACTIONS, seed=42)
    assert assign_groups(isic_records, FRACTIONS, seed=42) == first
    assert assign_groups(shuffled, FRACTIONS, seed=42) == first
    assert assign_groups(isic_records, FRACTIONS, seed=43) != first


def test_every_split_gets_a_positive_even_with_as_many_positive_patients_as_splits():
    records = [LabelRecord(f"p{p}", 1, f"P{p}", 0) for p in range(3)]
    records += [LabelRecord(f"n{i}", 0, f"N{i}", 0) for i in range(60)]
    images, positives = _split_counts(records, assign_groups(records, FRACTIONS, seed=1))
    assert [positives[k] for k in range(3)] == [1, 1, 1]
    assert all(images[k] > 1 for k in range(3))


def test_zero_fraction_split_stays_empty(isic_records):
    images, _ = _split_counts(isic_records, assign_groups(isic_records, (0.9, 0.1, 0.0), seed=5))
    assert images[2] == 0
    assert abs(images[0] / len(isic_records) - 0.9) < 0.005


def test_no_worse_than_sklearn_stratified_group_kfold(isic_records):
    """Class balance at least as close to the targets as the sklearn baseline folded 8/1/1."""
    np = pytest.importorskip("numpy")
    model_selection = pytest.importorskip("sklearn.model_selection")
    labels = np.array([r.label for r in isic_records])
    groups = np.array([r.group for r in isic_records])
    folds = [test for _, test in model_selection.StratifiedGroupKFold(10, shuffle=True, random_state=42)
             .split(np.zeros(len(labels)), labels, groups)]
    baseline_positives = [sum(int(labels[f].sum()) for f in folds[:8]), int(labels[folds[8]].sum()),
                          int(labels[folds[9]].sum())]
    _, positives = _split_counts(isic_records, assign_groups(isic_records, FRACTIONS, seed=42))
    total = int(labels.sum())

    def worst_relative_error(counts):
        return max(abs(counts[k] - f * total) / (f * total) for k, f in enumerate(FRACTIONS))

    assert worst_relative_error(positives) <= worst_relative_error(baseline_positives) + 0.02


def _train(negatives: int, positives: int) -> list[LabelRecord]:
    return ([LabelRecord(f"n{i:03d}", 0, f"g{i}", 0) for i in range(negatives)]
            + [LabelRecord(f"p{i:03d}", 1, f"h{i}", 0) for i in range(positives)])


def test_undersample_keeps_all_positives_and_as_many_negatives():
    balanced = balance_train(_train(100, 7), "undersample", seed=1)
    counts = Counter(r.label for r in balanced)
    assert counts == {0: 7, 1: 7}
    assert {r.image for r in balanced if r.label} == {f"p{i:03d}" for i in range(7)}


def test_oversample_repeats_positives_up_to_the_negatives():
    balanced = balance_train(_train(100, 7), "oversample", seed=1)
    counts = Counter(r.label for r in balanced)
    assert counts == {0: 100, 1: 100}
    assert Counter(r.image for r in balanced if r.label).most_common(1)[0][1] in (14, 15)


def test_balance_none_and_balancing_are_deterministic():
    train = _train(50, 5)
    assert balance_train(train, "none", seed=1) is train
    assert balance_train(train, "undersample", seed=9) == balance_train(train, "undersample", seed=9)


def test_patients_are_spread_by_the_fractions_too(isic_records):
    assignment = assign_groups(isic_records, FRACTIONS, seed=42)
    patients = Counter(assignment.values())
    for split, fraction in enumerate(FRACTIONS):
        assert abs(patients[split] / len(assignment) - fraction) < 0.03, patients
