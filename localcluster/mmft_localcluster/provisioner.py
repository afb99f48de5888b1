"""Simulated stand-in for GKE's Persistent Disk CSI provisioner (no disk exists anywhere).

For every PVC of a StorageClass whose provisioner is pd.csi.storage.gke.io, once the scheduler has picked a node
(annotation volume.kubernetes.io/selected-node, as WaitForFirstConsumer does), it creates a PersistentVolume
pre-bound to the claim in that node's zone; the real PV controller of kube-controller-manager then binds the pair.
When such a claim is deleted, it deletes the volume, as the CSI provisioner does for reclaimPolicy Delete.

For a claim whose pod goes to the real node (node.py), a disk that does not exist would leave the pod waiting for an
attach forever: there it makes a `local` PersistentVolume on a folder of --real-node-volumes-dir instead (a real
directory on the node, deleted with the claim), pinned to that node.

Run by `mmft cluster up` as: python -m mmft_localcluster.provisioner --kubeconfig PATH
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from mmft_localcluster.gke_nodes import PD_CSI_DRIVER, REAL_NODE_NAME

SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ZONE_LABEL = "topology.kubernetes.io/zone"
WATCH_SECONDS = 60

log = logging.getLogger("mmft-simulated-provisioner")


class Provisioner:
    def __init__(self, core, storage, real_node_volumes: Path | None = None):
        self.core = core
        self.storage = storage
        self.classes: dict[str, str] = {}
        self.real_node_volumes = real_node_volumes

    def refresh_classes(self) -> None:
        self.classes = {
            item.metadata.name: item.reclaim_policy or "Delete"
            for item in self.storage.list_storage_class().items
            if item.provisioner == PD_CSI_DRIVER
        }

    def on_claim(self, event_type: str, claim) -> None:
        if claim.spec.storage_class_name not in self.classes:
            return
        if event_type == "DELETED":
            self.delete_volume_of(claim)
        elif not claim.spec.volume_name and SELECTED_NODE in (claim.metadata.annotations or {}):
            self.create_volume_for(claim)

    def create_volume_for(self, claim) -> None:
        from kubernetes.client.exceptions import ApiException

        node_name = claim.metadata.annotations[SELECTED_NODE]
        zone = self.core.read_node(node_name).metadata.labels.get(ZONE_LABEL, "unknown-zone")
        name = f"pvc-{claim.metadata.uid}"
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PD_CSI_DRIVER}},
            "spec": {
                "capacity": {"storage": claim.spec.resources.requests["storage"]},
                "accessModes": claim.spec.access_modes,
                "volumeMode": claim.spec.volume_mode or "Filesystem",
                "storageClassName": claim.spec.storage_class_name,
                "persistentVolumeReclaimPolicy": self.classes[claim.spec.storage_class_name],
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": claim.metadata.namespace,
                    "name": claim.metadata.name,
                    "uid": claim.metadata.uid,
                },
                "csi": {
                    "driver": PD_CSI_DRIVER,
                    "volumeHandle": f"projects/mmft-local/zones/{zone}/disks/{name}",
                    "fsType": "ext4",
                },
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [zone]}]}
                        ]
                    }
                },
            },
        }
        if node_name == REAL_NODE_NAME and self.real_node_volumes is not None:
            folder = self.real_node_volumes / name
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)  # the pods run as a non-root uid; the folder is theirs alone
            del volume["spec"]["csi"]
            volume["spec"]["local"] = {"path": str(folder)}
            hostname = {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
            volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] = [{"matchExpressions": [hostname]}]
        try:
            self.core.create_persistent_volume(volume)
            log.info("created %s for %s/%s in %s", name, claim.metadata.namespace, claim.metadata.name, zone)
        except ApiException as error:
            if error.status != 409:  # 409: made already by an earlier event of the same claim
                raise

    def delete_volume_of(self, claim) -> None:
        from kubernetes.client.exceptions import ApiException

        if self.classes[claim.spec.storage_class_name] != "Delete":
            return
        if self.real_node_volumes is not None:
            shutil.rmtree(self.real_node_volumes / f"pvc-{claim.metadata.uid}", ignore_errors=True)
        try:
            self.core.delete_persistent_volume(f"pvc-{claim.metadata.uid}")
            log.info("deleted pvc-%s of %s/%s", claim.metadata.uid, claim.metadata.namespace, claim.metadata.name)
        except ApiException as error:
            if error.status != 404:
                raise

    def run_forever(self) -> None:
        from kubernetes import watch

        while True:
            try:
                self.refresh_classes()
                listing = self.core.list_persistent_volume_claim_for_all_namespaces()
                for claim in listing.items:
                    self.on_claim("ADDED", claim)
                stream = watch.Watch().stream(
                    self.core.list_persistent_volume_claim_for_all_namespaces,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=WATCH_SECONDS,
                )
                for event in stream:
                    if event["object"].spec.storage_class_name not in self.classes:
                        self.refresh_classes()
                    self.on_claim(event["type"], event["object"])
            except Exception:  # the API server restarting or a transient error: log it, relist and go on
                log.exception("provisioner loop failed; relisting in 1 s")
                time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--real-node-volumes-dir", type=Path, help="folders of the real node's volumes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    core, storage = client.CoreV1Api(api_client), client.StorageV1Api(api_client)
    Provisioner(core, storage, args.real_node_volumes_dir).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
