#!/usr/bin/env bash
# Builds Kueue's controller manager from its Go module into the mmft cache (never into the repository), next to the
# control-plane binaries, and keeps the module's CRD manifests beside it:
#   <cache>/localcluster/kueue-<version>-<go version>/{kueue,crds/*.yaml}
# Cached per Kueue and Go version: a second run only checks that the files exist.
# Usage: localcluster/build-kueue.sh   (build.sh calls it last)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/localcluster"
GO_VERSION=$(go env GOVERSION)
MODULE=sigs.k8s.io/kueue
DIR="$CACHE_ROOT/kueue-$KUEUE_VERSION-$GO_VERSION"
TIMES_LOG="$CACHE_ROOT/build-times.log"
mkdir -p "$CACHE_ROOT"

log_time() { # seconds kind
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) component=kueue seconds=$1 kind=$2 go=$GO_VERSION cores=$(nproc)"
    echo "build: $line"
    echo "$line" >>"$TIMES_LOG"
}

elapsed_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }

started=$EPOCHREALTIME
if [[ -x "$DIR/kueue" ]] && compgen -G "$DIR/crds/*.yaml" >/dev/null; then
    log_time "$(elapsed_since "$started")" cached
    exit 0
fi

staging="$DIR.partial"
rm -rf "$staging"
mkdir -p "$staging/crds"

# Kueue's go.mod has no replace directives, so `go install module@version` builds it exactly as released.
GOBIN="$staging" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X $MODULE/pkg/version.GitVersion=$KUEUE_VERSION" "$MODULE/cmd/kueue@$KUEUE_VERSION"

# The same module download that the build used holds the released CRDs.
module_dir=$(GOFLAGS="-buildvcs=false" go mod download -json "$MODULE@$KUEUE_VERSION" |
    awk -F'"' '$2 == "Dir" { print $4 }')
crd_dir="$module_dir/config/components/crd/bases"
compgen -G "$crd_dir/*.yaml" >/dev/null || { echo "build: no CRDs in $crd_dir" >&2; exit 1; }
cp "$crd_dir"/*.yaml "$staging/crds/"
chmod u+w "$staging"/crds/*.yaml # files in Go's module cache are read-only

[[ -x "$staging/kueue" ]] || { echo "build: kueue did not produce its binary" >&2; exit 1; }
rm -rf "$DIR"
mv "$staging" "$DIR"
log_time "$(elapsed_since "$started")" built
