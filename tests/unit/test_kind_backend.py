"""The kind backend, checked without Docker (docs/kind.md says what only a machine with Docker can run).

* deploy/kind/cluster.yaml goes through kind's own code: configcheck (deploy/kind/configcheck, built with Go into the
  mmft cache) runs kind's strict loader, validation and kubeadm patching; the kind binary built the way
  hack/kind-up.sh builds it runs `kind create cluster` against a stand-in `docker` (a mock, named so: kind gets no
  node image here, docs/kind.md) up to the point where it would pull the node image.
* hack/kind-up.sh builds Dockerfile stages that exist and images the overlay uses, and stops early without Docker.
* deploy/kind builds with the wheel's `kubectl kustomize` and agrees with cluster.yaml and the operator's API.
* deploy/kind/samples render into pods that schedule on cluster.yaml's nodes, and (marker `ml`) the commands of
  those pods run on CPU here with the tiny Gemma 3, pod paths mapped to a host bucket folder and gs:// to an emulator.
* tests/integration/backends.py selects the backend from the environment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from mmft_localcluster import kubectl_path
from mmft_localcluster.gke_nodes import CPU_SHAPE, GPU_RESOURCE, GPU_SHAPES, GPU_TAINT, ZONES, node_manifest
from mmft_operator.api.finetunejob import OutputVolume
from mmft_operator.settings import ENV_PREFIX, OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
KIND_DIR = ROOT / "deploy" / "kind"
CLUSTER_CONFIG = KIND_DIR / "cluster.yaml"
SAMPLES_DIR = KIND_DIR / "samples" / "tiny-pipeline"
CONFIGCHECK_DIR = KIND_DIR / "configcheck"
KIND_UP = ROOT / "hack" / "kind-up.sh"
DOCKERFILE = ROOT / "Dockerfile"
GPU_ACCELERATOR = "nvidia-tesla-a100"
# Set on every node by the kubelet itself, or by kwok's node manifests only: not part of the GKE shape.
NOT_GKE_SHAPE_LABELS = {"kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch", "type"}


def load_backends():
    """tests/integration is not on this directory's import path; dataclasses need the module registered."""
    name = "mmft_integration_backends"
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "integration" / "backends.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


backends = load_backends()


def kind_version() -> str:
    match = re.search(r"^KIND_VERSION=(\S+)$", (KIND_DIR / "versions.env").read_text(), re.M)
    assert match, "deploy/kind/versions.env: no KIND_VERSION=... line"
    return match.group(1)


def go_tool_cache(name: str) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the go command is missing: kind and configcheck are built with Go (go1.26 here)")
    go_version = subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()
    root = Path(os.environ.get("MMFT_CACHE_DIR", Path.home() / ".cache" / "mmft")) / "kind"
    return root / f"{name}-{kind_version()}-{go_version}"


@pytest.fixture(scope="module")
def configcheck() -> Path:
    """deploy/kind/configcheck built once per source version, outside the repository."""
    sources = sorted(CONFIGCHECK_DIR.glob("go.*")) + sorted(CONFIGCHECK_DIR.glob("*.go"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()[:12]
    binary = go_tool_cache(f"configcheck-{digest}") / "configcheck"
    if not os.access(binary, os.X_OK):
        subprocess.run(
            ["go", "build", "-trimpath", "-mod=readonly", "-o", str(binary), "."],
            cwd=CONFIGCHECK_DIR, check=True, timeout=600, env={**os.environ, "CGO_ENABLED": "0"},
        )
    return binary


@pytest.fixture(scope="module")
def kind_binary() -> Path:
    """kind built as hack/kind-up.sh builds it, into the same cache folder."""
    directory = go_tool_cache("kind")
    binary = directory / "kind"
    if not os.access(binary, os.X_OK):
        subprocess.run(
            ["go", "install", "-trimpath", "-ldflags", "-s -w", f"sigs.k8s.io/kind@{kind_version()}"],
            check=True, timeout=600,
            env={**os.environ, "GOBIN": str(directory), "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"},
        )
    return binary


def run_configcheck(configcheck: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(configcheck), str(config)], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def kind_view(configcheck) -> dict:
    """cluster.yaml as kind sees it: nodes with their labels, mounts and the kubeadm config kind would write."""
    result = run_configcheck(configcheck, CLUSTER_CONFIG)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def kubeadm_documents(node: dict) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(node["kubeadmConfig"]) if doc}


def gke_shape_labels(shape, zone: str) -> dict[str, str]:
    assert zone in ZONES
    labels = node_manifest("any", shape, zone)["metadata"]["labels"]
    return {key: value for key, value in labels.items() if key not in NOT_GKE_SHAPE_LABELS}


def workers(kind_view: dict) -> tuple[dict, dict]:
    nodes = kind_view["nodes"]
    assert [node["role"] for node in nodes] == ["control-plane", "worker", "worker"]
    gpu = [node for node in nodes if "cloud.google.com/gke-accelerator" in node["labels"]]
    cpu = [node for node in nodes[1:] if node not in gpu]
    assert len(gpu) == 1 and len(cpu) == 1, "expected one GPU worker and one CPU worker"
    return gpu[0], cpu[0]


def test_gpu_worker_has_the_simulated_a100_nodes_labels_and_taint(kind_view):
    gpu, _ = workers(kind_view)
    zone = gpu["labels"]["topology.kubernetes.io/zone"]
    assert gpu["labels"] == gke_shape_labels(GPU_SHAPES[GPU_ACCELERATOR], zone)
    registration = kubeadm_documents(gpu)["JoinConfiguration"]["nodeRegistration"]
    assert registration["taints"] == [GPU_TAINT]
    kubelet_args = {arg["name"]: arg["value"] for arg in registration["kubeletExtraArgs"]}
    assert set(kubelet_args["node-labels"].split(",")) == {f"{k}={v}" for k, v in gpu["labels"].items()}


def test_cpu_worker_has_the_simulated_cpu_nodes_labels_and_no_taint(kind_view):
    _, cpu = workers(kind_view)
    zone = cpu["labels"]["topology.kubernetes.io/zone"]
    assert cpu["labels"] == gke_shape_labels(CPU_SHAPE, zone)
    assert "taints" not in kubeadm_documents(cpu)["JoinConfiguration"]["nodeRegistration"]


def test_apiserver_adds_gpu_tolerations_like_gke_and_keeps_kinds_own_args(kind_view):
    control_plane = kind_view["nodes"][0]
    extra_args = kubeadm_documents(control_plane)["ClusterConfiguration"]["apiServer"]["extraArgs"]
    by_name = {arg["name"]: arg["value"] for arg in extra_args}
    assert "ExtendedResourceToleration" in by_name["enable-admission-plugins"].split(",")
    assert "runtime-config" in by_name, "the patch must append to kind's extraArgs, not replace them"


def test_every_worker_mounts_the_bucket_folder_the_tests_and_operator_use(kind_view):
    overlay_env = operator_env(kustomized_overlay())
    volume_kind, _, pod_dir = overlay_env["MMFT_BUCKET_VOLUME"].partition(":")
    assert volume_kind == "hostPath"
    host_dir = backends.DEFAULT_KIND_BUCKETS_DIR.relative_to(ROOT)
    assert "BUCKETS_DIR=$STATE_DIR/buckets" in KIND_UP.read_text() and host_dir == Path(".state/kind/buckets")
    for node in kind_view["nodes"][1:]:
        assert node["extraMounts"] == [{"hostPath": str(host_dir), "containerPath": pod_dir, "readOnly": False}]


def test_node_image_is_the_kubernetes_minor_the_local_control_plane_runs(kind_view):
    versions = (ROOT / "localcluster" / "versions.env").read_text()
    local_minor = re.search(r"^KUBERNETES_VERSION=(v1\.\d+)\.", versions, re.M).group(1)
    for node in kind_view["nodes"]:
        assert node["image"].startswith(f"kindest/node:{local_minor}."), node["image"]


@pytest.mark.parametrize(
    ("mistake", "kinds_message"),
    [
        ("  taints: [nvidia.com/gpu=present:NoSchedule]\n", "field taints not found"),
        ("- role: gpu-worker\n", '"gpu-worker" is not a valid node role'),
    ],
)
def test_configcheck_reports_kinds_own_errors(configcheck, tmp_path, mistake, kinds_message):
    config = tmp_path / "cluster.yaml"
    config.write_text(CLUSTER_CONFIG.read_text() + mistake)
    result = run_configcheck(configcheck, config)
    assert result.returncode == 1
    assert kinds_message in result.stderr


def test_configcheck_requires_the_kind_release_kind_up_builds():
    go_mod = (CONFIGCHECK_DIR / "go.mod").read_text()
    assert re.search(rf"^require sigs\.k8s\.io/kind {re.escape(kind_version())}$", go_mod, re.M), go_mod


STAND_IN_DOCKER = """\
#!/bin/sh
# Stand-in for the docker CLI (kind gets no node image here, docs/kind.md): answers what kind asks before it starts
# node containers (engine info, no existing cluster, image present, network made) and refuses `docker run`.
# Logs every call.
# kind starts the node containers concurrently and stops at the first failure: `run` fails after a second, so that
# every node's `run` has been called by then.
echo "$*" >>"$DOCKER_CALLS"
case "$1" in
  info) echo '{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true}';;
  ps|inspect|network) ;;
  run) sleep 1; echo "stand-in docker: no engine for: $*" >&2; exit 1;;
  *) echo "stand-in docker: no engine for: $*" >&2; exit 1;;
esac
"""


def test_kind_create_cluster_gets_as_far_as_starting_the_node_containers(kind_binary, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STAND_IN_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "docker-calls.log"
    result = subprocess.run(
        [str(kind_binary), "create", "cluster", "--config", str(CLUSTER_CONFIG), "--kubeconfig", str(tmp_path / "kc")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "DOCKER_CALLS": str(calls)},
    )
    output = result.stdout + result.stderr
    # kind prints this only once it has loaded and validated the config.
    assert 'Creating cluster "mmft"' in output, output
    assert result.returncode == 1 and "stand-in docker: no engine for: run" in output
    runs = {line.split()[2]: line for line in calls.read_text().splitlines() if line.startswith("run --name ")}
    assert sorted(runs) == ["mmft-control-plane", "mmft-worker", "mmft-worker2"]
    # The relative hostPath resolves against the repository root, where hack/kind-up.sh runs kind.
    bucket_volume = f"--volume={backends.DEFAULT_KIND_BUCKETS_DIR}:/mnt/buckets"
    assert [name for name, line in sorted(runs.items()) if bucket_volume in line.split()] == [
        "mmft-worker", "mmft-worker2"
    ]


def dockerfile_stages() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text(), re.M | re.I))


def kind_up_builds() -> dict[str, str]:
    """target -> image tag, from hack/kind-up.sh's call of localcluster/build-images.sh (docs/images.md)."""
    targets = re.search(r"^bash localcluster/build-images.sh ([a-z ]+)", KIND_UP.read_text(), re.M).group(1).split()
    return {target: f"mmft-{target}:dev" for target in targets}


def test_kind_up_builds_dockerfile_stages_and_loads_what_the_overlay_runs():
    builds = kind_up_builds()
    assert set(builds) == {"operator", "workload", "tensorboard"}
    assert set(builds) <= dockerfile_stages()
    loaded = re.search(r'load docker-image --name "\$CLUSTER" (.+)$', KIND_UP.read_text(), re.M).group(1).split()
    assert sorted(loaded) == sorted(builds.values())
    deployment = operator_deployment(kustomized_overlay())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == builds["operator"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert operator_env(kustomized_overlay())["MMFT_WORKLOAD_IMAGE"] == builds["workload"]


def test_the_build_context_has_every_file_the_dockerfile_copies():
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(part.startswith("--from=") for part in parts):
            sources += [part for part in parts[1:-1] if not part.startswith("--")]
    assert sources, "no COPY lines found in the Dockerfile"
    assert [source for source in sources if not (ROOT / source).exists()] == []


def write_stand_in_docker(bin_dir: Path, info_exit: int) -> None:
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        textwrap.dedent(f"""\
            #!/bin/sh
            [ "$1" = info ] && {{ echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; \
            exit {info_exit}; }}
            echo "stand-in docker must not be called past info: $*" >&2; exit 99
            """)
    )
    script.chmod(0o755)


def run_kind_up(path: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": path}
    return subprocess.run(["bash", str(KIND_UP)], capture_output=True, text=True, timeout=60, env=environ)


def test_kind_up_stops_first_thing_when_no_engine_answers_and_none_can_be_started(tmp_path):
    # No dockerd on this PATH: the image build says what to install before anything else runs.
    write_stand_in_docker(tmp_path / "bin", info_exit=1)
    result = run_kind_up(f"{tmp_path / 'bin'}:/usr/bin:/bin")
    assert result.returncode == 1
    assert "dockerd is not installed. Install it: apt-get install -y docker.io" in result.stderr
    assert "kind-up: building the images failed" in result.stderr
    assert "go: " not in result.stderr and "stand-in docker must not" not in result.stderr


def test_kind_up_says_docker_is_missing(tmp_path):
    if shutil.which("docker", path="/usr/bin:/bin"):
        pytest.skip("this machine has a docker command in /usr/bin or /bin")
    result = run_kind_up("/usr/bin:/bin")
    assert result.returncode == 1
    assert "no docker command. Install Debian's Docker engine: apt-get install -y docker.io" in result.stderr


def kustomized_overlay() -> list[dict]:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(KIND_DIR)], capture_output=True, text=True, timeout=60, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} in the kind overlay"
    return matches[0]


def operator_deployment(docs: list[dict]) -> dict:
    return find(docs, "Deployment", "mmft-operator")


def operator_env(docs: list[dict]) -> dict[str, str]:
    container = operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_overlay_installs_what_base_installs_plus_the_kind_stand_ins():
    base = subprocess.run(
        [str(kubectl_path()), "kustomize", str(ROOT / "deploy" / "base")], capture_output=True, text=True, check=True
    )
    base_objects = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(base.stdout) if doc}
    kind_objects = {(doc["kind"], doc["metadata"]["name"]) for doc in kustomized_overlay()}
    assert kind_objects - base_objects == {
        ("StorageClass", "standard-rwo"),
        ("Namespace", "mmft-gcs-emulator"),
        ("Deployment", "gcs-emulator"),
        ("Service", "gcs-emulator"),
    }
    assert base_objects <= kind_objects


def test_output_volumes_default_class_exists_on_kind():
    storage_class = find(kustomized_overlay(), "StorageClass", OutputVolume().storage_class_name)
    assert storage_class["provisioner"] == "rancher.io/local-path"
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"


def test_workloads_reach_the_emulator_service_and_it_serves_the_bucket_folders(kind_view):
    docs = kustomized_overlay()
    service = find(docs, "Service", "gcs-emulator")
    namespace, port = service["metadata"]["namespace"], service["spec"]["ports"][0]["port"]
    emulator_url = f"http://gcs-emulator.{namespace}.svc.cluster.local:{port}"
    assert operator_env(docs)["MMFT_STORAGE_EMULATOR_HOST"] == emulator_url
    pod = find(docs, "Deployment", "gcs-emulator")["spec"]["template"]["spec"]
    assert f"-external-url={emulator_url}" in pod["containers"][0]["args"]
    _, cpu = workers(kind_view)
    assert pod["nodeSelector"].items() <= cpu["labels"].items(), "the emulator must land on the untainted worker"
    bucket_mount_dir = operator_env(docs)["MMFT_BUCKET_VOLUME"].partition(":")[2]
    assert pod["volumes"][0]["hostPath"]["path"] == bucket_mount_dir


def test_operator_reads_every_setting_the_kind_overlay_sets():
    known = {ENV_PREFIX + field.upper() for field in OperatorSettings.__dataclass_fields__}
    set_by_overlay = {name for name in operator_env(kustomized_overlay()) if name.startswith(ENV_PREFIX)}
    assert set_by_overlay - known == set()


def test_gpu_capacity_comes_from_the_label_the_gpu_worker_carries(kind_view):
    gpu, _ = workers(kind_view)
    script = KIND_UP.read_text()
    assert "-l cloud.google.com/gke-accelerator-count" in script
    assert f"/status/$field/{GPU_RESOURCE.replace('/', '~1')}" in script
    assert int(gpu["labels"]["cloud.google.com/gke-accelerator-count"]) == GPU_SHAPES[GPU_ACCELERATOR].gpus


def kubeconfig_file(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


def test_local_backend_is_the_default_and_starts_its_own_cluster():
    for environ in ({}, {"MMFT_TEST_BACKEND": ""}, {"MMFT_TEST_BACKEND": "local"}):
        backend = backends.select_backend(environ)
        assert (backend.name, backend.kubeconfig, backend.simulated_pods, backend.operator_in_cluster) == (
            "local", None, True, False
        )


def test_local_backend_reuses_mmft_kubeconfig_and_ignores_kubeconfig():
    backend = backends.select_backend({"MMFT_KUBECONFIG": "/tmp/local/kubeconfig", "KUBECONFIG": "/elsewhere"})
    assert backend.kubeconfig == Path("/tmp/local/kubeconfig")
    assert backend.simulated_pods


def test_kind_backend_uses_kubeconfig_real_pods_and_the_operator_deployment(tmp_path):
    buckets = tmp_path / "buckets"
    (buckets / "mmft-kind").mkdir(parents=True)
    kubeconfig = kubeconfig_file(tmp_path)
    backend = backends.select_backend(
        {"MMFT_TEST_BACKEND": "kind", "KUBECONFIG": str(kubeconfig), "MMFT_KIND_BUCKETS_DIR": str(buckets)}
    )
    assert (backend.name, backend.kubeconfig, backend.simulated_pods, backend.operator_in_cluster) == (
        "kind", kubeconfig, False, True
    )
    assert backend.bucket_dir(backends.KIND_BUCKET) == buckets / "mmft-kind"
    with pytest.raises(backends.BackendError, match="MMFT_KIND_BUCKETS='other' hack/kind-up.sh"):
        backend.bucket_dir("other")


@pytest.mark.parametrize(
    ("kubeconfig", "message"),
    [
        (None, "MMFT_TEST_BACKEND=kind needs KUBECONFIG"),
        ("", "MMFT_TEST_BACKEND=kind needs KUBECONFIG"),
        ("/nonexistent/kubeconfig", "is not a file: run hack/kind-up.sh"),
        (f"/a/kubeconfig{os.pathsep}/b/kubeconfig", "lists several files"),
    ],
)
def test_kind_backend_refuses_to_start_without_a_kind_kubeconfig(tmp_path, kubeconfig, message):
    environ = {"MMFT_TEST_BACKEND": "kind", "MMFT_KIND_BUCKETS_DIR": str(tmp_path)}
    if kubeconfig is not None:
        environ["KUBECONFIG"] = kubeconfig
    with pytest.raises(backends.BackendError, match=re.escape(message)):
        backends.select_backend(environ)


def test_kind_backend_needs_the_bucket_folder_kind_up_mounts(tmp_path):
    environ = {
        "MMFT_TEST_BACKEND": "kind",
        "KUBECONFIG": str(kubeconfig_file(tmp_path)),
        "MMFT_KIND_BUCKETS_DIR": str(tmp_path / "missing"),
    }
    with pytest.raises(backends.BackendError, match="hack/kind-up.sh creates it"):
        backends.select_backend(environ)


def test_local_backend_takes_the_kubernetes_version_of_the_cluster_it_starts():
    assert backends.select_backend({"MMFT_TEST_KUBERNETES_VERSION": "previous"}).kubernetes_version == "previous"
    assert backends.select_backend({"MMFT_TEST_KUBERNETES_VERSION": " "}).kubernetes_version is None
    with pytest.raises(backends.BackendError, match="with MMFT_KUBECONFIG they reuse a running one"):
        backends.select_backend({"MMFT_TEST_KUBERNETES_VERSION": "1.36", "MMFT_KUBECONFIG": "/tmp/kubeconfig"})


def test_the_kubernetes_version_is_refused_for_the_kind_backend(tmp_path):
    environ = {"MMFT_TEST_BACKEND": "kind", "KUBECONFIG": str(kubeconfig_file(tmp_path)),
               "MMFT_KIND_BUCKETS_DIR": str(tmp_path), "MMFT_TEST_KUBERNETES_VERSION": "previous"}
    with pytest.raises(backends.BackendError, match="applies to the local backend only, not 'kind'"):
        backends.select_backend(environ)


def test_unknown_backend_names_the_choices():
    with pytest.raises(backends.BackendError, match="MMFT_TEST_BACKEND='kwok' is not a test backend; use 'local'"):
        backends.select_backend({"MMFT_TEST_BACKEND": "kwok"})


def test_local_backend_has_no_bucket_folders():
    with pytest.raises(backends.BackendError, match="mounts no bucket"):
        backends.select_backend({}).bucket_dir(backends.KIND_BUCKET)


def rendered_samples(namespace: str = "default") -> list[dict]:
    files = sorted(str(path) for path in SAMPLES_DIR.glob("*.yaml") if path.name != "kustomization.yaml")
    result = subprocess.run(
        ["mmft", "render", "--namespace", namespace, *files], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def sample_jobs(docs: list[dict]) -> dict[str, dict]:
    """component (dataprep, trainer, evaluator) -> Job."""
    return {job["metadata"]["labels"]["app.kubernetes.io/component"]: job for job in docs if job["kind"] == "Job"}


def test_sample_pods_land_on_the_kind_nodes_and_mount_only_what_kind_provides(kind_view):
    gpu, cpu = workers(kind_view)
    jobs = sample_jobs(rendered_samples())
    assert set(jobs) == {"dataprep", "trainer", "evaluator"}
    for component, job in jobs.items():
        pod = job["spec"]["template"]["spec"]
        selector = pod.get("nodeSelector", {})
        requests = pod["containers"][0]["resources"]["requests"]
        if GPU_RESOURCE in requests:
            assert selector.items() <= gpu["labels"].items(), component
        else:
            assert selector.items() <= cpu["labels"].items(), component
        # The gcsfuse CSI volume is the bucket, which MMFT_BUCKET_VOLUME turns into a hostPath; nothing else is CSI.
        csi = [volume["name"] for volume in pod["volumes"] if "csi" in volume]
        assert csi == ["gcs"], component
        claims = [volume for volume in pod["volumes"] if "persistentVolumeClaim" in volume]
        assert len(claims) == (component == "trainer")
    output_volume = next(doc for doc in rendered_samples() if doc["kind"] == "PersistentVolumeClaim")
    assert output_volume["spec"]["storageClassName"] == find(kustomized_overlay(), "StorageClass", "standard-rwo")[
        "metadata"]["name"]


def to_host(text: str, mounts: dict[str, Path]) -> str:
    for pod_path, host_path in mounts.items():
        text = text.replace(pod_path, str(host_path))
    return text


@pytest.mark.ml
def test_sample_pipeline_pod_commands_run_on_cpu_with_the_tiny_model(tmp_path):
    """What the kind pods run, run here: the operator's rendered commands, env and Axolotl config, with /mnt/gcs
    mapped to a host bucket folder (as the hostPath does on kind) and gs:// sent to an emulator (as
    MMFT_STORAGE_EMULATOR_HOST does). Only the containers and the Kubernetes layer are left out."""
    sys.path[:0] = [str(ROOT / "tests" / "ml"), str(ROOT / "tests" / "unit")]
    from dataprep_fixtures import SmallDataset
    from gcs_emulator import running_gcs_emulator
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from tiny_gemma import build_tiny_gemma3

    bucket_dir = tmp_path / "buckets" / "mmft-kind"
    (bucket_dir / "inputs" / "isic").mkdir(parents=True)
    SmallDataset(bucket_dir / "inputs" / "isic", patients=24, images=120, positives=20)
    build_tiny_gemma3(bucket_dir / "models" / "tiny-gemma3")
    docs = rendered_samples(namespace="e2e")
    mounts = {"/mnt/gcs": bucket_dir, "/outputs": tmp_path / "outputs", "/etc/mmft": tmp_path / "etc",
              "/scratch": tmp_path / "scratch"}
    axolotl = next(doc for doc in docs if doc["kind"] == "ConfigMap" and "axolotl.yaml" in doc.get("data", {}))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "axolotl.yaml").write_text(to_host(axolotl["data"]["axolotl.yaml"], mounts))
    jobs = sample_jobs(docs)
    with running_gcs_emulator() as endpoint:
        client = storage.Client(project="e2e", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": endpoint})
        client.create_bucket("mmft-kind")
        for component in ("dataprep", "trainer", "evaluator"):
            container = jobs[component]["spec"]["template"]["spec"]["containers"][0]
            env = {**os.environ, "STORAGE_EMULATOR_HOST": endpoint, "HF_HUB_OFFLINE": "1"}
            # No cluster here: the report goes to its file only, not to the ConfigMap.
            env.update({item["name"]: to_host(item["value"], mounts) for item in container["env"]
                        if "value" in item and item["name"] != "MMFT_REPORT_CONFIGMAP"})
            command = [to_host(part, mounts) for part in container["command"]]
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{component}: {result.stderr[-4000:]}"
        adapter = [blob.name for blob in client.list_blobs("mmft-kind", prefix="mmft/e2e/tiny-gemma3/model/adapter/")]
    assert any(name.endswith("adapter_config.json") for name in adapter), adapter
    prepared = bucket_dir / "prepared" / "tiny-isic"
    assert all((prepared / f"{split}.jsonl").stat().st_size > 0 for split in ("train", "validation", "test"))
    metrics = yaml.safe_load((bucket_dir / "evaluations" / "tiny-gemma3" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "tuned"}
    assert metrics["models"]["tuned"]["spec"].endswith("+gs://mmft-kind/mmft/e2e/tiny-gemma3/model/adapter")
