#!/usr/bin/env bash
# Builds Kueue's controller manager from its Go module into the mmft cache (never into the repository), next to the
# control-plane binaries, and keeps the module's CRD manifests beside it:
#   <cache>/localcluster/kueue-<version>-<go version>/{kueue,crds/*.yaml}
# Cached per Kueue and Go version: a second run only checks that the files exist.
# Usage: localcluster/build-kueue.sh   (build.sh calls it last)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_NAME=build
# shellcheck source=build-common.sh
source "$HERE/build-common.sh"
MODULE=sigs.k8s.io/kueue

build_kueue() {
    # Kueue's go.mod has no replace directives, so `go install module@version` builds it exactly as released.
    mkdir -p "$OUT_DIR/crds"
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w -X $MODULE/pkg/version.GitVersion=$KUEUE_VERSION" "$MODULE/cmd/kueue@$KUEUE_VERSION"
    # The same module download that the build used holds the released CRDs.
    local module_dir crd_dir
    module_dir=$(GOFLAGS="-buildvcs=false" go mod download -json "$MODULE@$KUEUE_VERSION" |
        awk -F'"' '$2 == "Dir" { print $4 }')
    crd_dir="$module_dir/config/components/crd/bases"
    compgen -G "$crd_dir/*.yaml" >/dev/null || { echo "build: no CRDs in $crd_dir" >&2; exit 1; }
    cp "$crd_dir"/*.yaml "$OUT_DIR/crds/"
    chmod u+w "$OUT_DIR"/crds/*.yaml # files in Go's module cache are read-only
}

# One CRD file stands for the folder: the build copies all of them or fails.
build_into "$CACHE_ROOT/kueue-$KUEUE_VERSION-$GO_VERSION" kueue kueue crds/kueue.x-k8s.io_clusterqueues.yaml \
    -- build_kueue
