"""Children of a FineTuneJob: Axolotl ConfigMap, output PVC, trainer Job (Indexed for several nodes), rendezvous
Service, TensorBoard Deployment and Service, and the report ConfigMap with the Role that lets the pod write it."""

from __future__ import annotations

from typing import Any

import yaml

from mmft_operator import naming
from mmft_operator.accelerators import profile
from mmft_operator.api.finetunejob import FineTuneJobSpec
from mmft_operator.contracts.exit_codes import FAIL_AT_ONCE
from mmft_operator.settings import OperatorSettings

from . import common
from .axolotl_config import OUTPUT_MOUNT, DatasetPaths, build_axolotl_config
from .common import Owner

KIND = "FineTuneJob"
TRAINER = "trainer"
TENSORBOARD = "tensorboard"
CONFIG_DIR = "/etc/mmft"
CONFIG_FILE = "axolotl.yaml"
TRAINER_CONTAINER = "trainer"
REPORT_FILE = f"{OUTPUT_MOUNT}/mmft/report.json"
SPOT_GRACE_SECONDS = 25  # Autopilot gives Spot pods at most 25 s, whatever the pod asks for.
ON_DEMAND_GRACE_SECONDS = 120


def bucket_run_dir(spec: FineTuneJobSpec, owner: Owner) -> str:
    """Per-run folder on the mounted bucket: TensorBoard events and (by default) the exported model."""
    return f"{spec.bucket.mount_path}/mmft/{owner.namespace}/{owner.name}"


def export_uri(spec: FineTuneJobSpec, owner: Owner) -> str:
    if spec.export is not None:
        return spec.export.uri
    return f"gs://{spec.bucket.name}/mmft/{owner.namespace}/{owner.name}/model"


def export_format(spec: FineTuneJobSpec) -> str:
    return spec.export.format if spec.export is not None else "adapter"


def export_locations(spec: FineTuneJobSpec, owner: Owner) -> dict[str, str]:
    base = export_uri(spec, owner).rstrip("/")
    fmt = export_format(spec)
    locations = {}
    if fmt in ("adapter", "both"):
        locations["adapterUri"] = f"{base}/adapter"
    if fmt in ("merged", "both"):
        locations["mergedUri"] = f"{base}/merged"
    return locations


def tensorboard_dir(spec: FineTuneJobSpec, owner: Owner) -> str:
    return f"{bucket_run_dir(spec, owner)}/tensorboard"


def build_config_map(owner: Owner, spec: FineTuneJobSpec, dataset: DatasetPaths) -> dict[str, Any]:
    rendered = yaml.safe_dump(build_axolotl_config(spec, dataset), sort_keys=False, width=120)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": common.metadata(owner, naming.config_map(owner.name), TRAINER),
        "data": {CONFIG_FILE: rendered},
    }


def build_output_pvc(owner: Owner, spec: FineTuneJobSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": common.metadata(owner, naming.output_pvc(owner.name), TRAINER),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": spec.output_volume.storage_class_name,
            "resources": {"requests": {"storage": str(spec.output_volume.size)}},
        },
    }


def trainer_command(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> list[str]:
    train_args = [
        "train",
        f"{CONFIG_DIR}/{CONFIG_FILE}",
        "--export-uri",
        export_uri(spec, owner),
        "--export",
        export_format(spec),
        "--tensorboard-sync-dir",
        tensorboard_dir(spec, owner),
    ]
    compute = spec.compute
    if compute.nodes == 1 and compute.gpus_per_node <= 1:  # one process: on one GPU, or on the CPU
        return ["mmft", *train_args]
    launcher = ["torchrun", f"--nproc-per-node={compute.gpus_per_node}"]
    if compute.nodes == 1:
        launcher += ["--standalone"]
    else:
        rendezvous_host = f"{naming.job(owner.name, 'train')}-0.{naming.rendezvous_service(owner.name)}"
        launcher += [
            f"--nnodes={compute.nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous_host}:{settings.rendezvous_port}",
            f"--rdzv-id={owner.uid}",
            "--max-restarts=0",
        ]
    return [*launcher, "-m", "mmft_trainer", *train_args]


def _requests(spec: FineTuneJobSpec) -> dict[str, str]:
    card = profile(spec.compute.accelerator)
    gpus = spec.compute.gpus_per_node
    return common.resource_requests(
        spec.compute.cpu or str(card.cpu_per_gpu * gpus),
        spec.compute.memory or f"{card.memory_gib_per_gpu * gpus}Gi",
        spec.compute.ephemeral_storage or f"{card.ephemeral_storage_gib}Gi",
    )


def _node_selector(spec: FineTuneJobSpec) -> dict[str, str]:
    # No GPU: any general-purpose node, so no accelerator to select.
    selector = {"cloud.google.com/gke-accelerator": spec.compute.accelerator} if spec.compute.gpus_per_node else {}
    if spec.compute.spot:
        selector["cloud.google.com/gke-spot"] = "true"
    return selector


def _resources(requests: dict[str, str], gpus: int) -> dict[str, Any]:
    if not gpus:
        return {"requests": requests}
    return {"requests": {**requests, "nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}


def build_trainer_job(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    compute = spec.compute
    requests = _requests(spec)
    env = [
        *common.workload_env(owner, REPORT_FILE, settings),
        *common.hf_token_env(spec.hugging_face_token_secret_ref),
        {"name": "HF_HOME", "value": f"{OUTPUT_MOUNT}/.cache/huggingface"},
        {"name": "AXOLOTL_DO_NOT_TRACK", "value": "1"},
        {"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"},
        {"name": "NCCL_DEBUG", "value": "WARN"},
    ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": spec.service_account_name,
        "nodeSelector": _node_selector(spec),
        "tolerations": common.gpu_tolerations(spec.compute.spot, gpu=bool(compute.gpus_per_node)),
        "terminationGracePeriodSeconds": SPOT_GRACE_SECONDS if compute.spot else ON_DEMAND_GRACE_SECONDS,
        "securityContext": common.pod_security_context(settings),
        "containers": [
            {
                "name": TRAINER_CONTAINER,
                "image": spec.trainer_image or settings.workload_image,
                "imagePullPolicy": "IfNotPresent",
                "command": trainer_command(owner, spec, settings),
                "env": env,
                "resources": _resources(requests, compute.gpus_per_node),
                "securityContext": common.container_security_context(),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "output", "mountPath": OUTPUT_MOUNT},
                    common.gcsfuse_mount(spec.bucket),
                    common.shm_mount(),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map(owner.name)}},
            {"name": "output", "persistentVolumeClaim": {"claimName": naming.output_pvc(owner.name)}},
            common.gcsfuse_volume(spec.bucket, settings),
            common.shm_volume(common.shm_size_for(requests["memory"])),
        ],
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        # Under Kueue the Job is created suspended and Kueue admits it; the operator never flips it afterwards.
        "suspend": spec.suspend or spec.queue_name is not None,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    # Invalid config or data, GPU out of memory: the same pod would fail the same way again.
                    "onExitCodes": {
                        "containerName": TRAINER_CONTAINER,
                        "operator": "In",
                        "values": sorted(FAIL_AT_ONCE),
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": {
            "metadata": {
                "labels": common.pod_labels(owner, TRAINER, spec.pod_metadata),
                "annotations": common.pod_annotations(spec.bucket, spec.pod_metadata, settings),
            },
            "spec": pod_spec,
        },
    }
    if compute.nodes > 1:
        job_spec.update({"completionMode": "Indexed", "completions": compute.nodes, "parallelism": compute.nodes})
        pod_spec["subdomain"] = naming.rendezvous_service(owner.name)
    labels = {}
    if spec.queue_name:
        labels["kueue.x-k8s.io/queue-name"] = spec.queue_name
    metadata = common.metadata(owner, naming.job(owner.name, "train"), TRAINER)
    metadata["labels"].update(labels)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def build_rendezvous_service(owner: Owner, settings: OperatorSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(owner, naming.rendezvous_service(owner.name), TRAINER),
        "spec": {
            "clusterIP": "None",
            # Ranks must resolve each other before they are Ready: rendezvous happens before readiness.
            "publishNotReadyAddresses": True,
            "selector": naming.selector(KIND, owner.name, TRAINER),
            "ports": [{"name": "rendezvous", "port": settings.rendezvous_port, "targetPort": settings.rendezvous_port}],
        },
    }


def build_tensorboard_deployment(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    name = naming.tensorboard(owner.name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": common.metadata(owner, name, TENSORBOARD),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": naming.selector(KIND, owner.name, TENSORBOARD)},
            "template": {
                "metadata": {
                    "labels": common.pod_labels(owner, TENSORBOARD, spec.pod_metadata),
                    "annotations": common.pod_annotations(spec.bucket, spec.pod_metadata, settings),
                },
                "spec": {
                    "serviceAccountName": spec.service_account_name,
                    # Reads event files from the bucket (GCS Fuse, read-only): never the trainer's RWO volume,
                    # so it schedules on any CPU node without a Multi-Attach error.
                    "securityContext": common.pod_security_context(settings),
                    "containers": [
                        {
                            "name": TENSORBOARD,
                            "image": settings.tensorboard_image,
                            "command": ["tensorboard"],
                            "args": [
                                f"--logdir={tensorboard_dir(spec, owner)}",
                                "--host=0.0.0.0",
                                f"--port={settings.tensorboard_port}",
                                "--reload_interval=30",
                            ],
                            "ports": [{"name": "http", "containerPort": settings.tensorboard_port}],
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "initialDelaySeconds": 10,
                                "periodSeconds": 10,
                            },
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "2Gi", "ephemeral-storage": "1Gi"},
                                "limits": {"memory": "2Gi"},
                            },
                            "securityContext": common.container_security_context(),
                            "volumeMounts": [
                                common.gcsfuse_mount(spec.bucket, read_only=True),
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        common.gcsfuse_volume(spec.bucket, settings, read_only=True),
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def build_tensorboard_service(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": common.metadata(owner, naming.tensorboard(owner.name), TENSORBOARD),
        "spec": {
            "type": spec.tensorboard.service_type,
            "selector": naming.selector(KIND, owner.name, TENSORBOARD),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def build_children(
    owner: Owner, spec: FineTuneJobSpec, dataset: DatasetPaths, settings: OperatorSettings
) -> list[dict[str, Any]]:
    """Every child, in creation order: what the Job mounts exists before the Job."""
    config = common.with_spec_hash(build_config_map(owner, spec, dataset))
    children = [
        common.build_report_config_map(owner, TRAINER),
        common.build_report_role(owner, TRAINER),
        common.build_report_role_binding(owner, TRAINER, spec.service_account_name),
        build_output_pvc(owner, spec),
    ]
    if spec.compute.nodes > 1:
        children.append(build_rendezvous_service(owner, settings))
    if spec.tensorboard.enabled:
        children += [
            build_tensorboard_deployment(owner, spec, settings),
            build_tensorboard_service(owner, spec, settings),
        ]
    job = build_trainer_job(owner, spec, settings)
    # The config's hash in the pod template: a config change while the Job waits replaces the waiting Job
    # (reconcile/waiting_job.py), so no pod starts with a config the spec no longer asks for.
    job["spec"]["template"]["metadata"]["annotations"][naming.CONFIG_HASH_ANNOTATION] = config["metadata"][
        "annotations"][naming.SPEC_HASH_ANNOTATION]
    return [config, *(common.with_spec_hash(child) for child in [*children, job])]
