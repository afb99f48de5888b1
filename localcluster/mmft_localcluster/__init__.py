"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler built from
Go modules) with kwok simulating GKE Autopilot GPU nodes. See docs/localcluster.md."""

from mmft_localcluster.cluster import ClusterError, LocalCluster
from mmft_localcluster.paths import kubectl_path

__all__ = ["ClusterError", "LocalCluster", "kubectl_path"]
