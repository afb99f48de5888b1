"""The local cluster waits for CRDs by reading their conditions, never trusting `kubectl wait` on a new CRD."""

from __future__ import annotations

import pytest
from mmft_localcluster.crds import not_established


def crd(name: str, status: dict | None) -> dict:
    return {"kind": "CustomResourceDefinition", "metadata": {"name": name}, **({"status": status} if status else {})}


ESTABLISHED = {"conditions": [{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}]}


@pytest.mark.parametrize(
    ("listing", "pending"),
    [
        # The answer CI met: a CRD created a moment ago, conditions still null.
        (crd("a.x.io", {"acceptedNames": {"kind": "", "plural": ""}, "conditions": None}), ["a.x.io"]),
        (crd("a.x.io", None), ["a.x.io"]),
        (crd("a.x.io", {"conditions": [{"type": "Established", "status": "False"}]}), ["a.x.io"]),
        (crd("a.x.io", ESTABLISHED), []),
        ({"kind": "List", "items": [crd("a.x.io", ESTABLISHED), crd("b.x.io", {"conditions": None})]}, ["b.x.io"]),
        ({"kind": "List", "items": [crd("a.x.io", ESTABLISHED), crd("b.x.io", ESTABLISHED)]}, []),
        ({"kind": "List", "items": []}, []),
    ],
)
def test_only_an_established_true_condition_counts(listing, pending):
    assert not_established(listing) == pending
