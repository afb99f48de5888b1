"""Group-aware stratified split: every group (patient) in exactly one split, class ratios kept per split.

The algorithm and its guarantees are documented in docs/dataprep.md ("Split").
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .labels import LabelRecord

NUM_CLASSES = 2


@dataclass
class _Group:
    name: str
    counts: list[int]  # items per class


def assign_groups(records: Sequence[LabelRecord], fractions: Sequence[float], seed: int) -> dict[str, int]:
    """Group name -> split index. Depends only on the set of records and the seed, not on their order."""
    groups = _groups(records)
    totals = [sum(group.counts[c] for group in groups) for c in range(NUM_CLASSES)]
    rarest_first = sorted(range(NUM_CLASSES), key=lambda c: (totals[c], c))
    demand = [[fraction * total for total in totals] for fraction in fractions]
    active = [k for k, fraction in enumerate(fractions) if fraction > 0]
    filled = [[0] * NUM_CLASSES for _ in fractions]

    assignment: dict[str, int] = {}
    for key_class, group in _placement_order(groups, rarest_first, seed):
        # A split with none of the group's key class yet takes it first, so each class reaches every split
        # whenever the class spans at least as many groups as there are splits.
        starving = [k for k in active if not filled[k][key_class]]
        best = max(starving or active, key=lambda k: (demand[k][key_class], sum(demand[k]), -k))
        for c in range(NUM_CLASSES):
            filled[best][c] += group.counts[c]
            demand[best][c] -= group.counts[c]
        assignment[group.name] = best
    return assignment


def _groups(records: Sequence[LabelRecord]) -> list[_Group]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * NUM_CLASSES)
    for record in records:
        counts[record.group][record.label] += 1
    return [_Group(name, counts[name]) for name in sorted(counts)]


def _placement_order(groups: list[_Group], rarest_first: list[int], seed: int) -> list[tuple[int, _Group]]:
    """(key class, group) in placement order: groups holding the rarest class first, those with most of it
    first, so its per-split counts land close to target; then the other groups in seeded random order, which
    keeps patients (not only images) spread by the fractions. Sorting by size everywhere would fill the large
    split with the largest patients."""
    shuffled = list(groups)
    random.Random(seed).shuffle(shuffled)
    rank = {c: position for position, c in enumerate(rarest_first)}
    keyed = [(next(c for c in rarest_first if group.counts[c]), group) for group in shuffled]
    return sorted(keyed, key=lambda item: (rank[item[0]], -item[1].counts[item[0]] if rank[item[0]] == 0 else 0))


def balance_train(records: list[LabelRecord], mode: str, seed: int) -> list[LabelRecord]:
    """The train records after class balancing: 'undersample' drops negatives, 'oversample' repeats positives."""
    if mode == "none":
        return records
    rng = random.Random(seed)
    positives = [r for r in records if r.label == 1]
    negatives = [r for r in records if r.label == 0]
    if not positives or not negatives:
        return records
    if mode == "undersample":
        minority, majority = sorted((positives, negatives), key=len)
        kept = minority + rng.sample(majority, len(minority))
    else:
        minority, majority = sorted((positives, negatives), key=len)
        copies, remainder = divmod(len(majority), len(minority))
        kept = majority + minority * copies + rng.sample(minority, remainder)
    return sorted(kept, key=lambda r: r.image)
