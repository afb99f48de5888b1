"""The real node's configuration files and its one-binary images (docs/localcluster.md, "The real node"); the node
itself runs in tests/integration/test_real_node.py."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
from mmft_localcluster import gke_nodes, node, node_image
from mmft_localcluster.node import NodeBinaries, NodeFiles
from mmft_localcluster.pki import PkiPaths

BINARIES = NodeBinaries(*(Path(f"/cache/{name}") for name in ("kubelet", "kube-proxy", "containerd", "shim", "ctr",
                                                                 "runc", "pause-0123abcd-go1.26.8/pause", "gcs")))


def test_the_node_has_a_gke_cpu_nodes_labels_no_accelerator_and_its_own_opt_in_label() -> None:
    cpu_node = gke_nodes.node_manifest("x", gke_nodes.CPU_SHAPE, node.NODE_ZONE)["metadata"]["labels"]
    labels = node.node_labels()
    set_by_kubelet = {"kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch"}
    assert {k: v for k, v in cpu_node.items() if k not in set_by_kubelet | {"type"}} == {
        k: v for k, v in labels.items() if k != node.REAL_NODE_LABEL
    }
    assert labels[node.REAL_NODE_LABEL] == "true"
    assert not any(key.startswith("cloud.google.com/gke-accelerator") for key in labels)
    # The namespace opt-in selects exactly that label and tolerates exactly the node's taint.
    annotations = node.REAL_NODE_NAMESPACE_ANNOTATIONS
    assert annotations["scheduler.alpha.kubernetes.io/node-selector"] == f"{node.REAL_NODE_LABEL}=true"
    toleration = json.loads(annotations["scheduler.alpha.kubernetes.io/defaultTolerations"])[0]
    assert (toleration["key"], toleration["value"], toleration["effect"]) == tuple(node.REAL_NODE_TAINT.values())


def test_containerd_keeps_everything_under_the_state_dir_and_pins_the_local_pause_image(tmp_path) -> None:
    files = NodeFiles(tmp_path)
    config = tomllib.loads(node.containerd_config(files, BINARIES))
    plugins = config["plugins"]
    assert config["version"] == 4
    assert Path(config["root"]).is_relative_to(tmp_path) and Path(config["state"]).is_relative_to(tmp_path)
    assert plugins["io.containerd.server.v1.grpc"]["address"] == str(files.containerd_socket)
    assert Path(plugins["io.containerd.server.v1.ttrpc"]["address"]).is_relative_to(tmp_path)
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["cni"]["conf_dir"] == str(files.cni_conf_dir)
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == "/cache/runc" and runc["SystemdCgroup"] is False
    assert Path(runc["Root"]).is_relative_to(tmp_path)
    sandbox = plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    assert sandbox == "mmft.local/pause:0123abcd-go1.26.8"


def test_the_kubelet_runs_on_cgroup_v1_with_cgroupfs_and_registers_tainted(tmp_path) -> None:
    config = json.loads(node.kubelet_config(NodeFiles(tmp_path), PkiPaths(tmp_path / "pki"), 10999))
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["registerWithTaints"] == [node.REAL_NODE_TAINT]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert "staticPodPath" not in config
    assert (config["address"], config["port"]) == (node.NODE_IP, 10999)
    cni = json.loads(node.cni_config(NodeFiles(tmp_path)))["plugins"][0]
    assert cni["bridge"] == node.NODE_BRIDGE and cni["ipam"]["ranges"][0][0]["subnet"] == str(node.POD_SUBNET)


def test_a_one_binary_image_is_a_deterministic_docker_archive(tmp_path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    first = node_image.write_single_binary_image(binary, "/pause", "mmft.local/pause:t", tmp_path / "a.tar")
    second = node_image.write_single_binary_image(binary, "/pause", "mmft.local/pause:t", tmp_path / "b.tar")
    assert first == second and (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with tarfile.open(tmp_path / "a.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        config_bytes = archive.extractfile(manifest["Config"]).read()
        layer = archive.extractfile(manifest["Layers"][0]).read()
    config = json.loads(config_bytes)
    assert manifest["RepoTags"] == ["mmft.local/pause:t"]
    assert first == f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer).hexdigest()}"]
    assert config["config"]["Entrypoint"] == ["/pause"]
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as files:
        member = files.getmember("pause")
        assert member.mode == 0o755 and files.extractfile(member).read() == binary.read_bytes()


def test_missing_prerequisites_name_what_installs_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(node, "CNI_PLUGIN_DIR", tmp_path / "no-cni")
    monkeypatch.setattr(node.shutil, "which", lambda command: None if command == "conntrack" else "/usr/bin/x")
    missing = node.missing_prerequisites()
    assert f"CNI plugin {tmp_path / 'no-cni' / 'bridge'}: apt-get install -y containernetworking-plugins" in missing
    assert "the conntrack command: apt-get install -y conntrack" in missing
    assert not any("iptables" in line for line in missing)


def test_up_without_the_prerequisites_names_them_and_starts_nothing(tmp_path, monkeypatch) -> None:
    from mmft_localcluster.cluster import ClusterError, LocalCluster

    monkeypatch.setattr(node, "CNI_PLUGIN_DIR", tmp_path / "no-cni")
    cluster = LocalCluster(tmp_path / "state", real_node=True)
    with pytest.raises(ClusterError, match="apt-get install -y containernetworking-plugins") as refused:
        cluster.up(log=lambda line: None)
    assert "the real node cannot start on this machine" in str(refused.value)
    assert cluster.processes.running() == {}
    assert not (tmp_path / "state" / "etcd").exists() and not (tmp_path / "state" / "node").exists()


def test_deploy_localcluster_agrees_with_the_real_node() -> None:
    """The manifests and Helm values are YAML and the node is Python: the facts they share are compared here."""
    import subprocess

    import yaml
    from mmft_localcluster import kubectl_path
    from mmft_localcluster.cluster import CHART, LOCAL_DEPLOY, MMFT_NAMESPACE
    from mmft_localcluster.paths import tool_path

    built = subprocess.run(
        [str(kubectl_path()), "kustomize", str(LOCAL_DEPLOY)], capture_output=True, text=True, check=True
    )
    # What `mmft cluster install-mmft` installs with the chart (cluster.install_mmft).
    rendered = subprocess.run(
        [str(tool_path("helm")), "template", "mmft", str(CHART), f"--namespace={MMFT_NAMESPACE}",
         f"--values={LOCAL_DEPLOY / 'values.yaml'}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    documents = [doc for text in (built.stdout, rendered.stdout) for doc in yaml.safe_load_all(text) if doc]
    by_kind_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}
    for namespace in (MMFT_NAMESPACE, "mmft-gcs-emulator"):
        annotations = by_kind_name[("Namespace", namespace)]["metadata"]["annotations"]
        parsed = {key: value for key, value in annotations.items() if key.startswith("scheduler.alpha")}
        expected = dict(node.REAL_NODE_NAMESPACE_ANNOTATIONS)
        assert json.loads(parsed.pop("scheduler.alpha.kubernetes.io/defaultTolerations")) == json.loads(
            expected.pop("scheduler.alpha.kubernetes.io/defaultTolerations")
        )
        assert parsed == expected
    operator_deployment = by_kind_name[("Deployment", "mmft-operator")]
    assert operator_deployment["metadata"]["namespace"] == MMFT_NAMESPACE
    operator = operator_deployment["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == "mmft-operator:dev" and operator["imagePullPolicy"] == "IfNotPresent"
    env = {item["name"]: item.get("value") for item in operator["env"]}
    assert env["MMFT_WORKLOAD_IMAGE"] == "mmft-workload:dev"
    assert env["MMFT_TENSORBOARD_IMAGE"] == "mmft-tensorboard:dev"
    assert env["MMFT_BUCKET_VOLUME"] == f"hostPath:{node.BUCKETS_ROOT}"
    emulator = by_kind_name[("Deployment", "gcs-emulator")]["spec"]["template"]["spec"]
    assert emulator["containers"][0]["image"] == node.gcs_emulator_image_reference()
    assert emulator["volumes"][0]["hostPath"]["path"] == str(node.BUCKETS_ROOT)
    service_ip = by_kind_name[("Service", "gcs-emulator")]["spec"]["clusterIP"]
    assert env["MMFT_STORAGE_EMULATOR_HOST"] == f"http://{service_ip}:4443"
    assert f"-external-url=http://{service_ip}:4443" in emulator["containers"][0]["args"]


def test_too_little_free_disk_is_refused_before_anything_starts(tmp_path, monkeypatch) -> None:
    """A full disk turns the node DiskPressure and every image load fails as a broken pipe: refuse it up front."""
    from mmft_localcluster.cluster import ClusterError, LocalCluster

    not_yet = tmp_path / "state" / "node"  # the folder need not exist: its nearest existing parent is measured
    assert node.free_space_problem(not_yet, minimum_gib=0) is None
    problem = node.free_space_problem(not_yet, minimum_gib=10**9)
    assert problem.startswith("only ") and f"free under {tmp_path}" in problem and "docker image prune" in problem
    monkeypatch.setattr(node, "missing_prerequisites", lambda: [])
    monkeypatch.setattr(node, "_owner", lambda: None)  # a real node running elsewhere on this machine is not the point
    monkeypatch.setattr(node, "MIN_FREE_GIB", 10**9)
    cluster = LocalCluster(tmp_path / "state", real_node=True)
    with pytest.raises(ClusterError, match="the real node cannot start: only .* GiB free"):
        cluster.up(log=lambda line: None)
    assert cluster.processes.running() == {}
