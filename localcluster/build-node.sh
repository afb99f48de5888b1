#!/usr/bin/env bash
# Builds the real node's container runtime from Go modules into the mmft cache (never into the repository):
#   <cache>/localcluster/containerd-<version>-<go>/{containerd,containerd-shim-runc-v2,ctr}
#   <cache>/localcluster/runc-<version>-<go>/runc                  (cgo + libseccomp: Debian's libseccomp-dev)
#   <cache>/localcluster/pause-<source digest>-<go>/pause          (localcluster/nodeimages/pause/pause.go, static)
#   <cache>/localcluster/probe-<source digest>-<go>/probe          (localcluster/nodeimages/probe/probe.go: tests)
#   <cache>/localcluster/fake-gcs-server-<version>-<go>/fake-gcs-server   (the GCS emulator of deploy/localcluster)
# Cached per component version (pause and probe per their source) and Go version, like build.sh's components.
# Usage: localcluster/build-node.sh   (build.sh calls it; nice'd: it competes with everything else on 2 cores)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_NAME=build-node
# shellcheck source=build-common.sh
source "$HERE/build-common.sh"

build_containerd() {
    # containerd's go.mod has no replace directives, so `go install module@version` builds it as released. The
    # snapshotters left out need C libraries or kernel features the node does not use (it runs on overlayfs).
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 nice -n 10 go install -trimpath -ldflags "-s -w" \
        -tags "no_btrfs no_devmapper no_zfs" \
        "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
}

build_runc() {
    # seccomp needs cgo and libseccomp's headers; pods ask for the RuntimeDefault seccomp profile.
    [[ -e /usr/include/seccomp.h ]] || {
        echo "build-node: runc needs libseccomp's headers: apt-get install -y libseccomp-dev" >&2
        exit 1
    }
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=1 nice -n 10 go install -trimpath -ldflags "-s -w" \
        -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
}

build_fake_gcs_server() {
    # Static (no cgo), so that an image of this one file runs it; its go.mod has no replace directives.
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 nice -n 10 go install -trimpath -ldflags "-s -w" \
        "github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION"
}

# build_single_file NAME: localcluster/nodeimages/NAME/NAME.go (standard library only) into a static binary.
build_single_file() {
    (cd "$HERE/nodeimages/$1" && GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GO111MODULE=off \
        go build -trimpath -ldflags "-s -w" -o "$OUT_DIR/$1" "$1.go")
}

command -v go >/dev/null || { echo "build-node: the go command is required (go1.26 or newer)" >&2; exit 1; }

for image in pause probe; do
    digest=$(sha256sum "$HERE/nodeimages/$image/$image.go" | cut -c1-12)
    build_into "$CACHE_ROOT/$image-$digest-$GO_VERSION" "$image" "$image" -- build_single_file "$image"
done
build_into "$CACHE_ROOT/runc-$RUNC_VERSION-$GO_VERSION" runc runc -- build_runc
build_into "$CACHE_ROOT/containerd-$CONTAINERD_VERSION-$GO_VERSION" containerd containerd containerd-shim-runc-v2 ctr \
    -- build_containerd
build_into "$CACHE_ROOT/fake-gcs-server-$FAKE_GCS_SERVER_VERSION-$GO_VERSION" fake-gcs-server fake-gcs-server \
    -- build_fake_gcs_server
