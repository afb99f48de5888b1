"""Operator settings from the environment, and the bucket-volume switch used on clusters without GCS Fuse (kind)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mmft_operator.render import render_documents
from mmft_operator.settings import OperatorSettings

SAMPLES = Path(__file__).resolve().parents[2] / "deploy/samples/gemma3-melanoma"


def _pods(settings: OperatorSettings) -> list[dict]:
    documents = [yaml.safe_load(path.read_text()) for path in sorted(SAMPLES.glob("[!k]*.yaml"))]
    children = render_documents(documents, "default", settings)
    templates = [c["spec"]["template"] for c in children if c["kind"] in ("Job", "Deployment")]
    assert len(templates) == 4  # dataprep, trainer, TensorBoard, evaluator
    return templates


def test_default_pods_mount_the_bucket_with_gcs_fuse() -> None:
    for template in _pods(OperatorSettings()):
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == "gcs")
        assert volume["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
        assert "uid=1000" in volume["csi"]["volumeAttributes"]["mountOptions"]
        assert template["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"


def test_host_path_switch_replaces_the_csi_volume_and_its_annotations() -> None:
    settings = OperatorSettings.from_environment(
        {"MMFT_BUCKET_VOLUME": "hostPath:/mnt/buckets", "MMFT_STORAGE_EMULATOR_HOST": "http://gcs.emulator:4443"}
    )
    for template in _pods(settings):
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == "gcs")
        assert volume == {
            "name": "gcs",
            "hostPath": {"path": "/mnt/buckets/my-mmft-bucket", "type": "DirectoryOrCreate"},
        }
        assert not any(key.startswith("gke-gcsfuse/") for key in template["metadata"].get("annotations", {}))
    trainer = next(t for t in _pods(settings) if t["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer")
    env = {e["name"]: e.get("value") for e in trainer["spec"]["containers"][0]["env"]}
    assert env["STORAGE_EMULATOR_HOST"] == "http://gcs.emulator:4443"


def test_a_bucket_volume_the_operator_does_not_know_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="MMFT_BUCKET_VOLUME"):
        OperatorSettings.from_environment({"MMFT_BUCKET_VOLUME": "nfs:/share"})


def test_integer_settings_are_parsed() -> None:
    assert OperatorSettings.from_environment({"MMFT_METRICS_PORT": "0"}).metrics_port == 0


def test_switches_are_parsed_from_true_or_false_and_anything_else_is_refused_naming_the_variable() -> None:
    assert OperatorSettings.from_environment({"MMFT_WORKLOAD_IDENTITY_CHECK": "false"}).workload_identity_check is False
    assert OperatorSettings.from_environment({"MMFT_WORKLOAD_IDENTITY_CHECK": "True"}).checks_workload_identity
    hostpath = OperatorSettings.from_environment({"MMFT_BUCKET_VOLUME": "hostPath:/b"})
    assert not hostpath.checks_workload_identity, "no Cloud Storage FUSE, no Workload Identity check"
    with pytest.raises(ValueError, match="MMFT_WORKLOAD_IDENTITY_CHECK"):
        OperatorSettings.from_environment({"MMFT_WORKLOAD_IDENTITY_CHECK": "maybe"})
    assert OperatorSettings.from_environment({"MMFT_START_FAILURE_GRACE_SECONDS": "5"}).start_failure_grace_seconds == 5
