#!/usr/bin/env bash
# Builds the local control plane from Go modules into the mmft cache (never into the repository):
#   etcd, kube-apiserver + kube-controller-manager + kube-scheduler (+ kubelet and kube-proxy for the real node), kwok,
#   and the previous minor version's control plane;
#   then Kueue (build-kueue.sh), the real node's containerd, runc and pause binary (build-node.sh), and the tools the
#   tests run against deploy/: helm, promtool and the monitoring CRDs (build-tools.sh).
# Cached per component version and Go version, so a second run only checks that the binaries exist.
# Usage: localcluster/build.sh            (or: mmft cluster build)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_NAME=build
# shellcheck source=build-common.sh
source "$HERE/build-common.sh"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"
export CGO_ENABLED=0

# build_component NAME VERSION BINARIES... -- COMMAND...: build_into the cache folder of NAME at VERSION.
build_component() {
    local name=$1 version=$2; shift 2
    build_into "$CACHE_ROOT/$name-$version-$GO_VERSION" "$name" "$@"
}

build_etcd() {
    (cd "$HERE/gomod/etcd" && go build -trimpath -ldflags "-s -w" -o "$OUT_DIR/etcd" .)
}

# build_kubernetes MODULE_DIR VERSION COMMANDS...: the named k8s.io/kubernetes commands, with the version they report.
build_kubernetes() {
    local module=$1 version=$2; shift 2
    local minor=${version#v1.}; minor=${minor%%.*}
    local ldflags="-s -w" packages=()
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $package.gitVersion=$version -X $package.gitMajor=1 -X $package.gitMinor=$minor"
        ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
    done
    for command in "$@"; do packages+=("k8s.io/kubernetes/cmd/$command"); done
    (cd "$HERE/gomod/$module" && go build -trimpath -ldflags "$ldflags" -o "$OUT_DIR/" "${packages[@]}")
}

build_kwok() {
    # kwok is a published module with its own go.mod, so `go install module@version` builds it as released.
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

command -v go >/dev/null || { echo "build: the go command is required (go1.26 or newer)" >&2; exit 1; }

build_component etcd "$ETCD_VERSION" etcd -- build_etcd
build_component kwok "$KWOK_VERSION" kwok -- build_kwok
NODE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
build_component kubernetes "$KUBERNETES_VERSION" "${NODE_COMMANDS[@]}" \
    -- build_kubernetes kubernetes "$KUBERNETES_VERSION" "${NODE_COMMANDS[@]}"
# The previous minor version's control plane (no node of its own: its clusters have kwok nodes only), for the
# integration tests that run against both supported minor versions (docs/install.md, Supported Kubernetes versions).
CONTROL_PLANE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler)
build_component kubernetes "$KUBERNETES_PREVIOUS_VERSION" "${CONTROL_PLANE_COMMANDS[@]}" \
    -- build_kubernetes kubernetes-previous "$KUBERNETES_PREVIOUS_VERSION" "${CONTROL_PLANE_COMMANDS[@]}"
bash "$HERE/build-kueue.sh"
bash "$HERE/build-node.sh"
bash "$HERE/build-tools.sh"
# Every binary is cached by version now; the compile cache only takes disk (build-common.sh).
rm -rf "$GOCACHE"
echo "build: binaries under $CACHE_ROOT"
