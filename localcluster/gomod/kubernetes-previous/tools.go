//go:build tools

// Package tools pins the control plane of the previous Kubernetes minor version (KUBERNETES_PREVIOUS_VERSION in
// versions.env), which the API-facing integration tests also run against. Nodes are kwok's, so no kubelet here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
