"""The local cluster runs either supported Kubernetes minor version, named the ways a user would name it."""

from __future__ import annotations

import json

import pytest
from mmft_localcluster import ClusterError, LocalCluster
from mmft_localcluster.paths import VERSIONS_FILE, read_versions, resolve_kubernetes_version

VERSIONS = read_versions()
CURRENT, PREVIOUS = VERSIONS["KUBERNETES_VERSION"], VERSIONS["KUBERNETES_PREVIOUS_VERSION"]


def minor(version: str) -> str:
    return version.lstrip("v").rsplit(".", 1)[0]


def test_the_two_versions_are_consecutive_minor_versions():
    current, previous = (int(minor(version).split(".")[1]) for version in (CURRENT, PREVIOUS))
    assert current == previous + 1, (CURRENT, PREVIOUS)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (None, CURRENT),
        ("", CURRENT),
        ("current", CURRENT),
        ("previous", PREVIOUS),
        (PREVIOUS, PREVIOUS),
        (PREVIOUS.lstrip("v"), PREVIOUS),
        (minor(PREVIOUS), PREVIOUS),
        (f"v{minor(CURRENT)}", CURRENT),
    ],
)
def test_a_version_is_resolved_from_a_word_a_minor_or_a_full_number(wanted, expected):
    assert resolve_kubernetes_version(wanted) == expected


@pytest.mark.parametrize("wanted", ["1.30", "v1.36.99", "latest", "1"])
def test_a_version_not_built_here_names_the_two_that_are(wanted):
    with pytest.raises(ValueError) as refused:
        resolve_kubernetes_version(wanted)
    assert all(part in str(refused.value) for part in (wanted, CURRENT, PREVIOUS, str(VERSIONS_FILE)))


def test_the_real_node_runs_only_with_the_newest_control_plane(tmp_path):
    with pytest.raises(ClusterError, match=f"kubelet is built for {CURRENT} only"):
        LocalCluster(tmp_path, real_node=True, kubernetes_version="previous")
    assert LocalCluster(tmp_path, real_node=True).kubernetes_version == CURRENT
    assert LocalCluster(tmp_path, kubernetes_version="previous").kubernetes_version == PREVIOUS


@pytest.mark.parametrize(
    ("recorded", "asked", "refused"),
    [({}, None, False), ({}, "previous", True), ({"kubernetes_version": PREVIOUS}, None, True),
     ({"kubernetes_version": PREVIOUS}, "previous", False)],
    ids=["unrecorded-is-newest", "unrecorded-not-previous", "other-version", "same-version"],
)
def test_up_keeps_a_running_cluster_of_the_asked_version_only(tmp_path, monkeypatch, recorded, asked, refused):
    """A running cluster of another version is refused; a state written before versions were recorded ran the
    newest (it read "a cluster of Kubernetes None already runs")."""
    cluster = LocalCluster(tmp_path, kubernetes_version=asked)
    cluster.state_file.write_text(json.dumps({"real_node": None, **recorded}))
    monkeypatch.setattr(LocalCluster, "is_running", lambda self: True)  # no processes: only the state file is read
    if refused:
        with pytest.raises(ClusterError, match="already runs in .*`mmft cluster down` first"):
            cluster.up(log=lambda line: None)
    else:
        assert cluster.up(log=lambda line: None) == cluster.kubeconfig
