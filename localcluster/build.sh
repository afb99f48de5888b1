#!/usr/bin/env bash
# Builds the local control plane from Go modules into the mmft cache (never into the repository):
#   etcd, kube-apiserver + kube-controller-manager + kube-scheduler (+ kubelet and kube-proxy for the real node), kwok;
#   then Kueue (build-kueue.sh) and the real node's containerd, runc and pause binary (build-node.sh).
# Cached per component version and Go version, so a second run only checks that the binaries exist.
# Usage: localcluster/build.sh            (or: mmft cluster build)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/localcluster"
GO_VERSION=$(go env GOVERSION)
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -mod=readonly"
export CGO_ENABLED=0
TIMES_LOG="$CACHE_ROOT/build-times.log"
mkdir -p "$CACHE_ROOT"

log_time() { # component seconds kind
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) component=$1 seconds=$2 kind=$3 go=$GO_VERSION cores=$(nproc)"
    echo "build: $line"
    echo "$line" >>"$TIMES_LOG"
}

elapsed_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }

# build_component NAME VERSION BINARIES... -- COMMAND...: runs COMMAND with $OUT_DIR set unless all binaries exist.
build_component() {
    local name=$1 version=$2; shift 2
    local binaries=()
    while [[ $1 != -- ]]; do binaries+=("$1"); shift; done
    shift
    local dir="$CACHE_ROOT/$name-$version-$GO_VERSION"
    local missing=0 started
    for binary in "${binaries[@]}"; do [[ -x "$dir/$binary" ]] || missing=1; done
    started=$EPOCHREALTIME
    if [[ $missing == 0 ]]; then
        log_time "$name" "$(elapsed_since "$started")" cached
        return
    fi
    local staging="$dir.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    OUT_DIR="$staging" "$@"
    for binary in "${binaries[@]}"; do
        [[ -x "$staging/$binary" ]] || { echo "build: $name did not produce $binary" >&2; exit 1; }
    done
    rm -rf "$dir"
    mv "$staging" "$dir"
    log_time "$name" "$(elapsed_since "$started")" built
}

build_etcd() {
    (cd "$HERE/gomod/etcd" && go build -trimpath -ldflags "-s -w" -o "$OUT_DIR/etcd" .)
}

build_kubernetes() {
    local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w"
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
        ldflags+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "$HERE/gomod/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$OUT_DIR/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy)
}

build_kwok() {
    # kwok is a published module with its own go.mod, so `go install module@version` builds it as released.
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

command -v go >/dev/null || { echo "build: the go command is required (go1.26 or newer)" >&2; exit 1; }

build_component etcd "$ETCD_VERSION" etcd -- build_etcd
build_component kwok "$KWOK_VERSION" kwok -- build_kwok
build_component kubernetes "$KUBERNETES_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy \
    -- build_kubernetes
bash "$HERE/build-kueue.sh"
bash "$HERE/build-node.sh"
echo "build: binaries under $CACHE_ROOT"
