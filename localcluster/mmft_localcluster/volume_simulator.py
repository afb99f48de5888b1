"""Simulated volume plumbing of the kwok nodes: GKE's CSI attacher and the kubelet's volume manager (no disk, no mount).

The attach/detach controller of kube-controller-manager is the real one: it acts on every node annotated
`volumes.kubernetes.io/controller-managed-attach-detach` (gke_nodes.py sets it, as a kubelet does when it registers),
creates a VolumeAttachment per attachable volume and node, refuses a second node for a ReadWriteOnce volume with its
own `FailedAttachVolume` event, and detaches when the last pod on a node goes. What no process does here is simulated:

- the Persistent Disk CSI driver's external-attacher: a VolumeAttachment of pd.csi.storage.gke.io is marked attached;
- the kubelet of a kwok node, before it starts a pod: every volume attached (node.status.volumesAttached, written by
  the attach/detach controller) and "mounted"; a Cloud Storage FUSE CSI volume (gcsfuse.csi.storage.gke.io) fails to
  mount, as GKE's driver refuses it, when the pod's ServiceAccount has no Workload Identity annotation, when the
  bucket does not exist in the GCS emulator (only with --gcs-emulator) or when the pod lacks `gke-gcsfuse/volumes`.
  A failure is a `FailedMount` Warning event from `kubelet` and a later retry; once all volumes are ready the pod
  gets the annotation kwok.mmft.io/volumes-mounted, which kwok's pod stages wait for (kwok_stages/pods.yaml).

Pods on the real node are its kubelet's business and are never touched. docs/localcluster.md lists what is modelled.

Run by `mmft cluster up` as: python -m mmft_localcluster.volume_simulator --kubeconfig PATH [--gcs-emulator URL]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from mmft_localcluster.gke_nodes import GCSFUSE_CSI_DRIVER, KWOK_NODE_ANNOTATION, PD_CSI_DRIVER

# Read by kwok's pod stages: until a pod with volumes carries it, kwok keeps the pod in ContainerCreating.
VOLUMES_MOUNTED = "kwok.mmft.io/volumes-mounted"
WORKLOAD_IDENTITY = "iam.gke.io/gcp-service-account"
GCSFUSE_POD_ANNOTATION = "gke-gcsfuse/volumes"
# The kubelet retries a failed mount with an exponential back-off (up to 2 min 2 s); shorter here, so that a fix
# (bucket created, annotation added) shows within seconds.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 8.0
WATCH_SECONDS = 60

log = logging.getLogger("mmft-simulated-volumes")


class MountFailed(Exception):
    """One volume cannot be set up yet; the message is the driver's error, as the kubelet's event carries it."""

    def __init__(self, volume: str, error: str):
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {error}')


class NotAttachedYet(Exception):
    """A volume the attach/detach controller has not attached to this node (yet): the kubelet only waits."""


def missing_workload_identity(bucket: str) -> str:
    """The driver's bucket check with a token of a ServiceAccount that no Google service account backs: GCS says 403
    (gcs-fuse-csi-driver pkg/csi_driver/node.go NodePublishVolume: "failed to get GCS bucket %q: %v")."""
    return (
        f'rpc error: code = PermissionDenied desc = failed to get GCS bucket "{bucket}": googleapi: Error 403: '
        "Caller does not have storage.objects.list access to the Google Cloud Storage bucket. "
        "Permission 'storage.objects.list' denied on resource (or it may not exist)., forbidden"
    )


def bucket_not_found(bucket: str) -> str:
    """The same check when the bucket does not exist: GCS's JSON API answers 404 to listing its objects."""
    return (
        f'rpc error: code = NotFound desc = failed to get GCS bucket "{bucket}": googleapi: Error 404: '
        "The specified bucket does not exist., notFound"
    )


SIDECAR_MISSING = "rpc error: code = FailedPrecondition desc = failed to find the sidecar container in Pod spec"


def csi_unique_name(driver: str, volume_handle: str) -> str:
    """How the kubelet and the attach/detach controller name a CSI volume in node.status.volumesAttached."""
    return f"kubernetes.io/csi/{driver}^{volume_handle}"


class BucketDirectory:
    """Which buckets exist: the GCS emulator's JSON API (fake-gcs-server), or, without one, every bucket."""

    def __init__(self, emulator_url: str | None):
        self.emulator_url = emulator_url.rstrip("/") if emulator_url else None

    def exists(self, bucket: str) -> bool:
        if self.emulator_url is None:
            return True
        url = f"{self.emulator_url}/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?maxResults=1"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise


@dataclass
class Waiting:
    """A pod on a kwok node whose volumes are not all set up, and when to try again."""

    namespace: str
    name: str
    next_try: float = 0.0
    delay: float = FIRST_RETRY_SECONDS
    waiting_for_attach: bool = False
    events: dict[str, str] = field(default_factory=dict)  # message -> Event name, to count repeats as the kubelet does


class VolumeSimulator:
    def __init__(self, core, storage, buckets: BucketDirectory):
        self.core = core
        self.storage = storage
        self.buckets = buckets
        self.kwok_nodes: dict[str, bool] = {}  # node name -> whether kwok plays its kubelet
        self.waiting: dict[str, Waiting] = {}  # pod uid -> state
        self.wakeups: queue.Queue = queue.Queue()

    # -- the external-attacher of pd.csi.storage.gke.io ----------------------------------------------------------

    def on_volume_attachment(self, attachment) -> None:
        if attachment.spec.attacher != PD_CSI_DRIVER or attachment.metadata.deletion_timestamp:
            return
        if attachment.status and attachment.status.attached:
            return
        self.storage.patch_volume_attachment_status(attachment.metadata.name, {"status": {"attached": True}})
        log.info("attached %s to %s", attachment.spec.source.persistent_volume_name, attachment.spec.node_name)

    # -- the kubelet's volume manager ----------------------------------------------------------------------------

    def on_pod(self, event_type: str, pod) -> None:
        uid = pod.metadata.uid
        if event_type == "DELETED" or not self._needs_mounting(pod):
            self.waiting.pop(uid, None)
            return
        if uid not in self.waiting:
            self.waiting[uid] = Waiting(pod.metadata.namespace, pod.metadata.name)
        self.waiting[uid].next_try = 0.0  # something changed: try now

    def _needs_mounting(self, pod) -> bool:
        annotations = pod.metadata.annotations or {}
        return (
            bool(pod.spec.node_name)
            and pod.metadata.deletion_timestamp is None
            and pod.status.phase == "Pending"
            and annotations.get(VOLUMES_MOUNTED) != "true"
            and any(_simulated_volume(volume) for volume in pod.spec.volumes or [])
            and self._is_kwok_node(pod.spec.node_name)
        )

    def _is_kwok_node(self, name: str) -> bool:
        if name not in self.kwok_nodes:
            from kubernetes.client.exceptions import ApiException

            try:
                node = self.core.read_node(name)
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            self.kwok_nodes[name] = (node.metadata.annotations or {}).get(KWOK_NODE_ANNOTATION) == "fake"
        return self.kwok_nodes[name]

    def retry_due(self) -> None:
        now = time.monotonic()
        for uid, waiting in list(self.waiting.items()):
            if waiting.next_try <= now:
                self._try_mount(uid, waiting)

    def _try_mount(self, uid: str, waiting: Waiting) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            pod = self.core.read_namespaced_pod(waiting.name, waiting.namespace)
        except ApiException as error:
            if error.status == 404:
                self.waiting.pop(uid, None)
                return
            raise
        if pod.metadata.uid != uid or not self._needs_mounting(pod):
            self.waiting.pop(uid, None)
            return
        try:
            for volume in pod.spec.volumes or []:
                self._set_up(pod, volume)
        except NotAttachedYet:  # woken by the node's volumesAttached changing; the back-off is a safety net
            waiting.waiting_for_attach = True
            self._back_off(waiting)
            return
        except MountFailed as failure:
            waiting.waiting_for_attach = False
            self._record_failed_mount(pod, waiting, str(failure))
            self._back_off(waiting)
            return
        self.core.patch_namespaced_pod(
            pod.metadata.name, pod.metadata.namespace, {"metadata": {"annotations": {VOLUMES_MOUNTED: "true"}}}
        )
        self.waiting.pop(uid, None)
        log.info("volumes of %s/%s mounted on %s", pod.metadata.namespace, pod.metadata.name, pod.spec.node_name)

    @staticmethod
    def _back_off(waiting: Waiting) -> None:
        waiting.next_try = time.monotonic() + waiting.delay
        waiting.delay = min(waiting.delay * 2, MAX_RETRY_SECONDS)

    def _set_up(self, pod, volume) -> None:
        if volume.csi is not None and volume.csi.driver == GCSFUSE_CSI_DRIVER:
            self._set_up_gcsfuse(pod, volume.name, (volume.csi.volume_attributes or {}).get("bucketName", ""))
            return
        claim_name = _claim_name(pod, volume)
        if claim_name is None:
            return
        claim = self.core.read_namespaced_persistent_volume_claim(claim_name, pod.metadata.namespace)
        if not claim.spec.volume_name or claim.status.phase != "Bound":
            raise NotAttachedYet(claim_name)
        pv = self.core.read_persistent_volume(claim.spec.volume_name)
        csi = pv.spec.csi
        if csi is None:
            return  # e.g. a local or hostPath volume: nothing to attach
        if csi.driver == GCSFUSE_CSI_DRIVER:
            self._set_up_gcsfuse(pod, volume.name, csi.volume_handle)
        elif csi.driver == PD_CSI_DRIVER:
            node = self.core.read_node(pod.spec.node_name)
            attached = {entry.name for entry in node.status.volumes_attached or []}
            if csi_unique_name(csi.driver, csi.volume_handle) not in attached:
                raise NotAttachedYet(claim_name)

    def _set_up_gcsfuse(self, pod, volume_name: str, bucket: str) -> None:
        """In the order GKE's driver checks: the bucket with the pod's identity, then the injected sidecar."""
        account = self.core.read_namespaced_service_account(
            pod.spec.service_account_name or "default", pod.metadata.namespace
        )
        if not (account.metadata.annotations or {}).get(WORKLOAD_IDENTITY):
            raise MountFailed(volume_name, missing_workload_identity(bucket))
        try:
            exists = self.buckets.exists(bucket)
        except OSError as error:
            raise MountFailed(volume_name, f"simulated: the GCS emulator did not answer: {error}") from None
        if not exists:
            raise MountFailed(volume_name, bucket_not_found(bucket))
        if (pod.metadata.annotations or {}).get(GCSFUSE_POD_ANNOTATION, "").lower() != "true":
            raise MountFailed(volume_name, SIDECAR_MISSING)

    def _record_failed_mount(self, pod, waiting: Waiting, message: str) -> None:
        """A Warning event as the kubelet's recorder writes it; a repeat raises its count."""
        now = datetime.datetime.now(datetime.UTC)
        existing = waiting.events.get(message)
        if existing is not None:
            from kubernetes.client.exceptions import ApiException

            try:
                event = self.core.read_namespaced_event(existing, pod.metadata.namespace)
                self.core.patch_namespaced_event(
                    existing, pod.metadata.namespace, {"count": (event.count or 1) + 1, "lastTimestamp": _rfc3339(now)}
                )
                return
            except ApiException as error:
                if error.status != 404:
                    raise
        name = f"{pod.metadata.name}.{time.time_ns():x}"
        self.core.create_namespaced_event(
            pod.metadata.namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": pod.metadata.namespace},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "namespace": pod.metadata.namespace,
                    "name": pod.metadata.name,
                    "uid": pod.metadata.uid,
                },
                "reason": "FailedMount",
                "message": message,
                "type": "Warning",
                "source": {"component": "kubelet", "host": pod.spec.node_name},
                "reportingComponent": "kubelet",
                "reportingInstance": pod.spec.node_name,
                "firstTimestamp": _rfc3339(now),
                "lastTimestamp": _rfc3339(now),
                "count": 1,
            },
        )
        waiting.events[message] = name
        log.info("FailedMount %s/%s: %s", pod.metadata.namespace, pod.metadata.name, message)

    # -- loops ---------------------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        for target in (self._watch_pods, self._watch_attachments, self._watch_nodes):
            threading.Thread(target=target, daemon=True).start()
        while True:
            try:
                kind, event_type, obj = self.wakeups.get(timeout=0.5)
                if kind == "pod":
                    self.on_pod(event_type, obj)
                elif kind == "attachment":
                    self.on_volume_attachment(obj)
                elif kind == "node":  # volumesAttached changed: pods waiting for an attach may go on
                    for waiting in self.waiting.values():
                        if waiting.waiting_for_attach:
                            waiting.next_try = 0.0
            except queue.Empty:
                pass
            except Exception:  # the API server restarting or a transient error: log it and go on
                log.exception("volume simulator step failed")
            try:
                self.retry_due()
            except Exception:
                log.exception("volume simulator retry failed")
                time.sleep(1)

    def _watch_pods(self) -> None:
        self._watch("pod", self.core.list_pod_for_all_namespaces, field_selector="status.phase=Pending")

    def _watch_attachments(self) -> None:
        self._watch("attachment", self.storage.list_volume_attachment)

    def _watch_nodes(self) -> None:
        self._watch("node", self.core.list_node)

    def _watch(self, kind: str, lister, **selectors) -> None:
        from kubernetes import watch

        while True:
            try:
                listing = lister(**selectors)
                for item in listing.items:
                    self.wakeups.put((kind, "ADDED", item))
                stream = watch.Watch().stream(
                    lister,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=WATCH_SECONDS,
                    **selectors,
                )
                for event in stream:
                    self.wakeups.put((kind, event["type"], event["object"]))
            except Exception:
                log.exception("watch of %ss failed; relisting in 1 s", kind)
                time.sleep(1)


def _simulated_volume(volume) -> bool:
    """Volumes whose set-up the simulation plays; the same test as kwok_stages/pods.yaml's volume gate."""
    return volume.persistent_volume_claim is not None or volume.ephemeral is not None or volume.csi is not None


def _claim_name(pod, volume) -> str | None:
    if volume.persistent_volume_claim is not None:
        return volume.persistent_volume_claim.claim_name
    if volume.ephemeral is not None:  # a generic ephemeral volume's claim is named <pod>-<volume>
        return f"{pod.metadata.name}-{volume.name}"
    return None


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--gcs-emulator", help="fake-gcs-server URL; without it every bucket is taken to exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    core, storage = client.CoreV1Api(api_client), client.StorageV1Api(api_client)
    VolumeSimulator(core, storage, BucketDirectory(args.gcs_emulator)).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
