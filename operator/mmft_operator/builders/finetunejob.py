"""Children of a FineTuneJob: Axolotl ConfigMap, output PVC (one node), trainer Job (Indexed for several nodes),
rendezvous Service, TensorBoard Deployment and Service, and the report ConfigMap with the Role that lets the pod write
it.

Where checkpoints go: one node writes them to its own ReadWriteOnce PVC (a local disk, and only one pod mounts it).
Several nodes cannot share such a claim (a second node cannot attach it), and every rank must read the checkpoint it
resumes from, so their checkpoints go to the bucket through the GCS Fuse mount every pod already has, and each pod
gets an emptyDir on its node's ephemeral storage for scratch (model download, TensorBoard events, the report)."""

from __future__ import annotations

from typing import Any

import yaml

from mmft_operator import gke, naming
from mmft_operator.accelerators import profile
from mmft_operator.api.finetunejob import FineTuneJobSpec, OutputVolume
from mmft_operator.api.tracking import TrackingSettings
from mmft_operator.contracts.exit_codes import FAIL_AT_ONCE, GANG_RESTART
from mmft_operator.settings import OperatorSettings
from mmft_operator.training_defaults import model_shape

from . import common
from .axolotl_config import OUTPUT_MOUNT, RUN_DIR, DatasetPaths, build_axolotl_config
from .common import Owner

KIND = "FineTuneJob"
TRAINER = "trainer"
TENSORBOARD = "tensorboard"
CONFIG_DIR = "/etc/mmft"
CONFIG_FILE = "axolotl.yaml"
TRAINER_CONTAINER = "trainer"
REPORT_FILE = f"{OUTPUT_MOUNT}/mmft/report.json"
# Several nodes: TensorBoard writes its event files on the pod's own disk (the env var transformers reads), and the
# trainer syncs them to the bucket; written through GCS Fuse they would only appear when the file is closed.
TENSORBOARD_EVENTS_DIR = f"{OUTPUT_MOUNT}/tensorboard"
OUTPUT_VOLUME = "output"
SCRATCH_VOLUME = "scratch"
ON_DEMAND_GRACE_SECONDS = 120


def bucket_run_dir(spec: FineTuneJobSpec, owner: Owner) -> str:
    """Per-run folder on the mounted bucket: TensorBoard events and (by default) the exported model."""
    return f"{spec.bucket.mount_path}/mmft/{owner.namespace}/{owner.name}"


def checkpoint_dir(spec: FineTuneJobSpec, owner: Owner) -> str:
    """Axolotl's output_dir, where checkpoint-N directories go: readable by every rank of the run."""
    if spec.compute.nodes > 1:
        return f"{bucket_run_dir(spec, owner)}/run"
    return RUN_DIR


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
    config = build_axolotl_config(spec, dataset, output_dir=checkpoint_dir(spec, owner), run_name=owner.name)
    rendered = yaml.safe_dump(config, sort_keys=False, width=120)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": common.metadata(owner, naming.config_map(owner.name), TRAINER),
        "data": {CONFIG_FILE: rendered},
    }


def build_output_pvc(owner: Owner, spec: FineTuneJobSpec) -> dict[str, Any]:
    output_volume = spec.output_volume or OutputVolume()
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": common.metadata(owner, naming.output_pvc(owner.name), TRAINER),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": output_volume.storage_class_name,
            "resources": {"requests": {"storage": str(output_volume.size)}},
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
    # torchrun's own command line, run by mmft's gang launcher, which turns a failure caused by a lost peer into
    # GANG_RESTART and keeps a worker's own exit code (78, 87 ...) that torchrun would report as 1.
    launcher = ["python", "-m", "mmft_trainer.gang", f"--nproc-per-node={compute.gpus_per_node}"]
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
        spec.compute.ephemeral_storage
        or (f"{_default_ephemeral_storage_gib(spec)}Gi" if gpus else common.NO_GPU_EPHEMERAL_STORAGE),
    )


def _default_ephemeral_storage_gib(spec: FineTuneJobSpec) -> int:
    card = profile(spec.compute.accelerator)
    if spec.compute.nodes == 1:
        return card.ephemeral_storage_gib  # the base model downloads onto the output claim
    # Several nodes have no claim: each pod downloads the base model onto its own disk (HF_HOME on the scratch
    # emptyDir, limited to this request). The card's 10Gi evicted every rank of a 12B or 27B run.
    download = model_shape(spec.base_model, spec.base_model_size).download_gib
    return max(card.ephemeral_storage_gib, common.scratch_gib(download))


def tracking_env(tracking: TrackingSettings | None) -> list[dict[str, Any]]:
    """Credentials of spec.tracking as variables from their Secrets (never in the Axolotl ConfigMap), and the W&B
    server, which wandb reads only from the environment."""
    if tracking is None:
        return []
    env: list[dict[str, Any]] = []
    if tracking.wandb is not None:
        env.append(_secret_env("WANDB_API_KEY", tracking.wandb.api_key_secret_ref))
        if tracking.wandb.base_url:
            env.append({"name": "WANDB_BASE_URL", "value": tracking.wandb.base_url})
    if tracking.mlflow is not None:
        for name, ref in (
            ("MLFLOW_TRACKING_TOKEN", tracking.mlflow.token_secret_ref),
            ("MLFLOW_TRACKING_USERNAME", tracking.mlflow.username_secret_ref),
            ("MLFLOW_TRACKING_PASSWORD", tracking.mlflow.password_secret_ref),
        ):
            if ref is not None:
                env.append(_secret_env(name, ref))
    return env


def _secret_env(name: str, ref: Any) -> dict[str, Any]:  # noqa: ANN401 - a SecretKeySelector
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _resources(requests: dict[str, str], gpus: int) -> dict[str, Any]:
    if not gpus:
        return {"requests": requests}
    return {"requests": {**requests, "nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}


def build_trainer_job(owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings) -> dict[str, Any]:
    compute = spec.compute
    requests = _requests(spec)
    multi_node = compute.nodes > 1
    env = [
        *common.workload_env(owner, REPORT_FILE, settings),
        *common.hf_token_env(spec.hugging_face_token_secret_ref),
        {"name": "HF_HOME", "value": f"{OUTPUT_MOUNT}/.cache/huggingface"},
        {"name": "AXOLOTL_DO_NOT_TRACK", "value": "1"},
        {"name": "PYTORCH_CUDA_ALLOC_CONF", "value": "expandable_segments:True"},
        {"name": "NCCL_DEBUG", "value": "WARN"},
        *tracking_env(spec.tracking),
    ]
    provisioning = compute.provisioning_model
    if multi_node:
        env.append({"name": "TENSORBOARD_LOGGING_DIR", "value": TENSORBOARD_EVENTS_DIR})
        output_volume = {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": requests["ephemeral-storage"]}}
    else:
        output_volume = {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": naming.output_pvc(owner.name)}}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": spec.service_account_name,
        "nodeSelector": common.node_selector(provisioning, compute.accelerator if compute.gpus_per_node else None),
        "tolerations": common.gpu_tolerations(provisioning, gpu=bool(compute.gpus_per_node)),
        "terminationGracePeriodSeconds": (
            gke.SPOT_GRACE_SECONDS if provisioning == "spot" else ON_DEMAND_GRACE_SECONDS
        ),
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
                    {"name": output_volume["name"], "mountPath": OUTPUT_MOUNT},
                    common.gcsfuse_mount(spec.bucket),
                    common.shm_mount(),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map(owner.name)}},
            output_volume,
            common.gcsfuse_volume(spec.bucket, settings),
            common.shm_volume(common.shm_size_for(requests["memory"])),
        ],
    }
    common.apply_hatches(pod_spec, pod_spec["containers"][0], spec)
    # No ttlSecondsAfterFinished: the operator sets it by outcome once status records the outcome, so the Job is
    # never collected before its verdict is kept.
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
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
    if multi_node:
        job_spec.update({"completionMode": "Indexed", "completions": compute.nodes, "parallelism": compute.nodes})
        pod_spec["subdomain"] = naming.rendezvous_service(owner.name)
        # One rank per node, as compute.nodes says: two ranks on one node would share its GPUs' PCIe and NICs.
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": naming.selector(KIND, owner.name, TRAINER)},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        # A rank that stopped because a peer was lost (preempted, its node gone) is replaced without spending a
        # retry, so the whole gang starts again and resumes from the newest complete checkpoint on the bucket.
        job_spec["podFailurePolicy"]["rules"].insert(
            1,
            {
                "action": "Ignore",
                "onExitCodes": {"containerName": TRAINER_CONTAINER, "operator": "In", "values": [GANG_RESTART]},
            },
        )
    labels = {}
    if spec.queue_name:
        labels["kueue.x-k8s.io/queue-name"] = spec.queue_name
    metadata = common.metadata(owner, naming.job(owner.name, "train"), TRAINER, naming.attempt_annotations(spec.retry))
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
    deployment = _tensorboard_deployment(owner, spec, settings, name)
    common.apply_scheduling(deployment["spec"]["template"]["spec"], spec.tensorboard.scheduling)
    return deployment


def _tensorboard_deployment(
    owner: Owner, spec: FineTuneJobSpec, settings: OperatorSettings, name: str
) -> dict[str, Any]:
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
    ]
    if spec.compute.nodes > 1:
        children.append(build_rendezvous_service(owner, settings))
    else:
        children.append(build_output_pvc(owner, spec))
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
