// Command configcheck loads a kind cluster config with kind's own code and prints what `kind create cluster` would
// make of it, without Docker: kind's strict decoder and defaults (encoding.Load), its validation (Cluster.Validate),
// and, for every node, the kubeadm config kind writes to /kind/kubeadm.conf (kubeadm.Config, then the cluster's and
// the node's kubeadmConfigPatches applied by patch.KubeYAML).
//
// The module path sits under sigs.k8s.io/kind/pkg/cluster/ because Go lets only import paths there use kind's
// internal packages (pkg/internal, pkg/cluster/internal), and those are the code `kind create cluster` runs.
//
// Usage: configcheck CLUSTER.yaml   (JSON on stdout; exit 1 with kind's own error message when the config is invalid)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/cluster/constants"
	"sigs.k8s.io/kind/pkg/cluster/internal/kubeadm"
	"sigs.k8s.io/kind/pkg/cluster/internal/providers/common"
	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
	"sigs.k8s.io/kind/pkg/internal/patch"
)

type mount struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly"`
}

type node struct {
	Name          string            `json:"name"`
	Role          string            `json:"role"`
	Image         string            `json:"image"`
	Labels        map[string]string `json:"labels"`
	ExtraMounts   []mount           `json:"extraMounts"`
	KubeadmConfig string            `json:"kubeadmConfig"`
}

type report struct {
	Name  string `json:"name"`
	Nodes []node `json:"nodes"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: configcheck CLUSTER.yaml")
		os.Exit(2)
	}
	out, err := check(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "configcheck: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "configcheck:", err)
		os.Exit(1)
	}
}

func check(path string) (*report, error) {
	cfg, err := encoding.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	out := &report{Name: cfg.Name}
	nodeName := common.MakeNodeNamer(cfg.Name)
	for i := range cfg.Nodes {
		n := &cfg.Nodes[i]
		name := nodeName(string(n.Role))
		kubeadmConfig, err := kubeadmConfigFor(cfg, n, name)
		if err != nil {
			return nil, fmt.Errorf("node %d (%s): %w", i, n.Role, err)
		}
		labels := map[string]string{}
		for key, value := range n.Labels {
			labels[key] = value
		}
		mounts := make([]mount, 0, len(n.ExtraMounts))
		for _, m := range n.ExtraMounts {
			mounts = append(mounts, mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, ReadOnly: m.Readonly})
		}
		out.Nodes = append(out.Nodes, node{
			Name: name, Role: string(n.Role), Image: n.Image, Labels: labels, ExtraMounts: mounts, KubeadmConfig: kubeadmConfig,
		})
	}
	return out, nil
}

// kubeadmConfigFor follows kind's create/actions/config getKubeadmConfig. What only a running node knows (its
// address) is a documentation address (192.0.2.10); the Kubernetes version is the one of the node image.
func kubeadmConfigFor(cfg *config.Cluster, n *config.Node, name string) (string, error) {
	data := kubeadm.ConfigData{
		NodeProvider:         "docker",
		ClusterName:          cfg.Name,
		ControlPlaneEndpoint: cfg.Name + "-control-plane:6443",
		APIBindPort:          6443,
		APIServerAddress:     cfg.Networking.APIServerAddress,
		Token:                kubeadm.Token,
		PodSubnet:            cfg.Networking.PodSubnet,
		KubeProxyMode:        string(cfg.Networking.KubeProxyMode),
		ServiceSubnet:        cfg.Networking.ServiceSubnet,
		ControlPlane:         string(n.Role) == constants.ControlPlaneNodeRoleValue,
		IPFamily:             cfg.Networking.IPFamily,
		FeatureGates:         cfg.FeatureGates,
		RuntimeConfig:        cfg.RuntimeConfig,
		KubernetesVersion:    imageVersion(n.Image),
		NodeName:             name,
		NodeAddress:          "192.0.2.10",
		NodeLabels:           commaSeparated(n.Labels),
	}
	generated, err := kubeadm.Config(data)
	if err != nil {
		return "", err
	}
	patched, err := patch.KubeYAML(generated, cfg.KubeadmConfigPatches, cfg.KubeadmConfigPatchesJSON6902)
	if err != nil {
		return "", err
	}
	if len(n.KubeadmConfigPatches) > 0 || len(n.KubeadmConfigPatchesJSON6902) > 0 {
		patched, err = patch.KubeYAML(patched, n.KubeadmConfigPatches, n.KubeadmConfigPatchesJSON6902)
		if err != nil {
			return "", err
		}
	}
	return strings.ReplaceAll(patched, "metadata:\n  name: config\n", ""), nil
}

// imageVersion is the tag of a kindest/node image (v1.37.0 in kindest/node:v1.37.0@sha256:...).
func imageVersion(image string) string {
	if image == "" {
		image = defaults.Image
	}
	image = strings.SplitN(image, "@", 2)[0]
	return image[strings.LastIndex(image, ":")+1:]
}

func commaSeparated(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for key, value := range labels {
		pairs = append(pairs, key+"="+value)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}
