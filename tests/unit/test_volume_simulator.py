"""The volume simulator's pure parts (the cluster behaviour is tests/integration/test_volume_simulation.py)."""

from __future__ import annotations

import yaml
from kubernetes import client
from mmft_localcluster import volume_simulator
from mmft_localcluster.paths import STAGES_DIR

GATED_STAGES = {"mmft-pod-running", "mmft-pod-waiting", "mmft-pod-container-creating"}


def _volume_gates() -> dict[str, str]:
    """Each pod stage's selector expression that decides whether the pod's volumes are ready."""
    gates = {}
    for stage in yaml.safe_load_all((STAGES_DIR / "pods.yaml").read_text()):
        for expression in stage["spec"]["selector"]["matchExpressions"]:
            if volume_simulator.VOLUMES_MOUNTED in expression["key"]:
                gates[stage["metadata"]["name"]] = expression["key"]
    return gates


def test_the_stages_that_start_a_pod_wait_for_the_same_volume_gate():
    gates = _volume_gates()
    assert set(gates) == GATED_STAGES
    assert len(set(gates.values())) == 1, gates


def test_the_gate_and_the_simulator_pick_the_same_volume_kinds():
    (gate,) = set(_volume_gates().values())
    gated_fields = {"persistentVolumeClaim", "ephemeral", "csi"}
    for field in gated_fields:
        assert f".{field}" in gate
    volumes = {
        "persistentVolumeClaim": client.V1Volume(
            name="a", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="c")
        ),
        "ephemeral": client.V1Volume(name="b", ephemeral=client.V1EphemeralVolumeSource()),
        "csi": client.V1Volume(name="c", csi=client.V1CSIVolumeSource(driver=volume_simulator.GCSFUSE_CSI_DRIVER)),
        "emptyDir": client.V1Volume(name="d", empty_dir=client.V1EmptyDirVolumeSource()),
        "projected": client.V1Volume(name="e", projected=client.V1ProjectedVolumeSource(sources=[])),
        "hostPath": client.V1Volume(name="f", host_path=client.V1HostPathVolumeSource(path="/x")),
    }
    simulated = {kind for kind, volume in volumes.items() if volume_simulator._simulated_volume(volume)}
    assert simulated == gated_fields


def test_failed_mounts_back_off_to_the_cap():
    waiting = volume_simulator.Waiting("ns", "pod")
    delays = []
    for _ in range(6):
        delays.append(waiting.delay)
        volume_simulator.VolumeSimulator._back_off(waiting)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert volume_simulator.MAX_RETRY_SECONDS == 8.0


def test_bucket_directory_without_an_emulator_takes_every_bucket_to_exist():
    assert volume_simulator.BucketDirectory(None).exists("any-bucket-name")


def test_kubelet_event_message_wraps_the_driver_error():
    failure = volume_simulator.MountFailed("gcs", volume_simulator.bucket_not_found("b"))
    assert str(failure).startswith('MountVolume.SetUp failed for volume "gcs" : rpc error: code = NotFound desc = ')
    assert '"b"' in str(failure)
