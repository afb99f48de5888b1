# Sourced by build.sh, build-node.sh and build-kueue.sh: where the Go-built binaries are cached, how each build is
# timed, and how a component is built into a staging folder and moved into place only when complete.
# Needs HERE (this folder) and BUILD_NAME (the prefix of messages) set by the sourcing script.

# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/localcluster"
# Go's compile cache, private to these builds: build.sh removes it once every binary is in place, because it is worth
# nothing then and the whole set leaves 12 GB in it (measured 2026-12-05, when a full disk failed a CI run). A later
# version bump recompiles that one component from a cold compile cache (docs/localcluster.md).
export GOCACHE="${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/go-build"
GO_VERSION=$(go env GOVERSION)
TIMES_LOG="$CACHE_ROOT/build-times.log"
mkdir -p "$CACHE_ROOT"

log_time() { # component seconds kind
    local line
    line="$(date -u +%Y-%m-%dT%H:%M:%SZ) component=$1 seconds=$2 kind=$3 go=$GO_VERSION cores=$(nproc)"
    echo "build: $line"
    echo "$line" >>"$TIMES_LOG"
}

elapsed_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }

# build_into DIR COMPONENT FILES... -- COMMAND...: runs COMMAND with $OUT_DIR (a staging folder) unless every FILE
# (a path relative to DIR) exists, checks that COMMAND produced them, then moves the staging folder to DIR.
build_into() {
    local dir=$1 name=$2; shift 2
    local files=()
    while [[ $1 != -- ]]; do files+=("$1"); shift; done
    shift
    local missing=0 started=$EPOCHREALTIME
    for file in "${files[@]}"; do [[ -e "$dir/$file" ]] || missing=1; done
    if [[ $missing == 0 ]]; then
        log_time "$name" "$(elapsed_since "$started")" cached
        return
    fi
    local staging="$dir.partial"
    rm -rf "$staging"
    mkdir -p "$staging"
    OUT_DIR="$staging" "$@"
    for file in "${files[@]}"; do
        [[ -e "$staging/$file" ]] || { echo "$BUILD_NAME: $name did not produce $file" >&2; exit 1; }
    done
    rm -rf "$dir"
    mv "$staging" "$dir"
    log_time "$name" "$(elapsed_since "$started")" built
}
