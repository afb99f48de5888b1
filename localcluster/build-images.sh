#!/usr/bin/env bash
# Builds mmft's images with the local Docker engine, without any image registry (docs/images.md):
#   mmft-base:bookworm-<key>  a Debian bookworm root filesystem made with debootstrap (python3 3.11), docker-imported
#   mmft-operator:<tag>       Dockerfile target `operator`: slim, no torch
#   mmft-workload:<tag>       Dockerfile target `workload`: mmft dataprep|train|evaluate, torch variant $MMFT_TORCH_VARIANT
#   mmft-tensorboard:<tag>    Dockerfile target `tensorboard`: the per-job TensorBoard Deployment's image
# Usage: localcluster/build-images.sh [operator|workload|tensorboard|base|all]...   (default: all)
# Prints one line per image: `<name:tag> <image ID>`. Starts Debian's dockerd when no engine answers.
#
# Cached by content, twice: Docker's own build cache, and exported images under $MMFT_IMAGE_CACHE keyed by a hash of
# what goes into them, so a wiped Docker engine (or a fresh checkout on the same machine) loads instead of building.
# An image whose io.mmft.content-key label equals the tree's key is up to date: nothing is built.
#
# Environment:
#   MMFT_IMAGE_TAG      tag of the three images (default dev)
#   MMFT_TORCH_VARIANT  cpu (default here: CUDA libraries replaced by no-device stubs) or cuda (the GKE image)
#   MMFT_IMAGE_CACHE    exported images and root filesystems (default ${MMFT_CACHE_DIR:-~/.cache/mmft}/images)
#   MMFT_BASE_IMAGE     use this image as the Python base instead of making one (e.g. python:3.11.11-slim-bookworm)
#   MMFT_DEBIAN_MIRROR  debootstrap's mirror (default http://deb.debian.org/debian)
#   MMFT_CA_BUNDLE      CA bundle the build's downloads trust (default this machine's /etc/ssl/certs/ca-certificates.crt)
#   MMFT_BUILD_CACHE_KEEP  bytes of BuildKit's layer cache kept after a build (default 1000000000; see trim_build_cache)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${MMFT_IMAGE_TAG:-dev}
TORCH_VARIANT=${MMFT_TORCH_VARIANT:-cpu}
CACHE=${MMFT_IMAGE_CACHE:-${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/images}
DEBIAN_MIRROR=${MMFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SUITE=bookworm
# python3-venv: the Dockerfile makes a virtual environment (as it does on python:3.11-slim); ca-certificates: pip
# and google-cloud-storage speak TLS.
BASE_PACKAGES=python3,python3-venv,ca-certificates
KEY_LABEL=io.mmft.content-key
HOST_CA_BUNDLE=${MMFT_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

fail() { echo "build-images: $*" >&2; exit 1; }
log() { echo "build-images: $*" >&2; }
elapsed_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }
sha() { sha256sum | cut -c1-16; }

[[ $TORCH_VARIANT == cpu || $TORCH_VARIANT == cuda ]] || fail "MMFT_TORCH_VARIANT=$TORCH_VARIANT: use cpu or cuda"
mkdir -p "$CACHE"

# --- the engine ---------------------------------------------------------------------------------------------------

ensure_docker() {
    command -v docker >/dev/null || fail "no docker command. Install Debian's Docker engine: apt-get install -y docker.io"
    docker info >/dev/null 2>&1 && return
    command -v dockerd >/dev/null \
        || fail "no Docker engine answers and dockerd is not installed. Install it: apt-get install -y docker.io"
    [[ $EUID == 0 ]] || fail "no Docker engine answers; only root can start dockerd (sudo dockerd, or systemctl start docker)"
    local log_file=$CACHE/dockerd.log pid
    log "starting dockerd (log: $log_file)"
    setsid dockerd >"$log_file" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && { log "dockerd $pid answers"; return; }
        kill -0 "$pid" 2>/dev/null || fail "dockerd exited at start:
$(tail -n 5 "$log_file")"
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    fail "dockerd did not answer within 60 s (stopped it):
$(tail -n 5 "$log_file")"
}

# BuildKit is needed (RUN --mount). Docker 23+ clients build with the buildx plugin; older ones (Debian's docker.io
# 20.10) have BuildKit built in behind DOCKER_BUILDKIT=1. No `# syntax=` line: that would pull a frontend image.
BUILD=()
choose_builder() {
    if docker buildx version >/dev/null 2>&1; then
        BUILD=(docker buildx build --load)
        return
    fi
    local client major
    for client in docker /usr/bin/docker; do
        command -v "$client" >/dev/null || continue
        major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1) || continue
        if [[ -n $major && $major -lt 23 ]]; then
            BUILD=(env DOCKER_BUILDKIT=1 "$client" build)
            return
        fi
    done
    fail "no BuildKit builder: install the buildx plugin for $(command -v docker), or Debian's client (apt-get install -y docker.io)"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null; }
image_key() { docker image inspect --format "{{index .Config.Labels \"$KEY_LABEL\"}}" "$1" 2>/dev/null; }

# save_to_cache NAME REF KEY: exports REF to $CACHE/NAME-KEY.tar, then drops older exports of NAME. The partial file is
# this process's own, so two builds (another tag, another checkout) never remove each other's.
save_to_cache() {
    local name=$1 ref=$2 key=$3 started=$EPOCHREALTIME old
    if ! docker save "$ref" >"$CACHE/$name-$key.tar.partial.$$"; then
        # Only the cache misses it (a full disk, typically): the image itself is built and tagged.
        rm -f "$CACHE/$name-$key.tar.partial.$$"
        log "could not export $ref to $CACHE (free space: $(df -h --output=avail "$CACHE" | tail -1 | tr -d ' ')); continuing"
        return 0
    fi
    mv "$CACHE/$name-$key.tar.partial.$$" "$CACHE/$name-$key.tar"
    for old in "$CACHE/$name"-*.tar; do
        [[ $old == "$CACHE/$name-$key.tar" ]] || rm -f "$old"
    done
    log "$ref exported to $CACHE/$name-$key.tar in $(elapsed_since "$started") s"
}

# forget_previous NAME REF: untags the image NAME was before REF (recorded in $CACHE/NAME.ref), as save_to_cache drops
# its export: each dependency change would otherwise leave a 4.6 GB workload image behind (a full disk on the
# development machine after a day of edits to pyproject.toml, measured 2026-12-05).
forget_previous() {
    local name=$1 ref=$2 record=$CACHE/$1.ref previous
    previous=$(cat "$record" 2>/dev/null || true)
    if [[ -n $previous && $previous != "$ref" ]] && image_id "$previous" >/dev/null; then
        docker rmi "$previous" >/dev/null 2>&1 && log "removed $previous (superseded by $ref)" || true
    fi
    echo "$ref" >"$record"
}

# prune_superseded: the untagged images of earlier builds of this script (its label), which a rebuilt tag leaves.
prune_superseded() {
    docker image prune -f --filter "label=$KEY_LABEL" >/dev/null || log "could not prune superseded images"
}

# trim_build_cache: BuildKit keeps every stage it ran, among them the CUDA-sized packages stage (7.3 GB) and its CPU
# copy (4.5 GB) of each dependency build, although the dependency images already hold what later builds need. Two
# dependency builds left 22 GB (2026-12-05), and the next CI run on that machine failed on a full disk. After a build,
# layers beyond the most recently used $MMFT_BUILD_CACHE_KEEP bytes go (all of the engine's, not only ours: BuildKit
# cannot tell them apart); pip's cache mount stays, so a changed pyproject.toml still installs from it.
trim_build_cache() {
    local started=$EPOCHREALTIME
    docker builder prune --force --filter type=regular --keep-storage "${MMFT_BUILD_CACHE_KEEP:-1000000000}" \
        >/dev/null 2>&1 && log "trimmed BuildKit's layer cache in $(elapsed_since "$started") s" \
        || log "could not trim BuildKit's layer cache (docker builder prune); continuing"
}

# load_from_cache NAME KEY: loads an export if there is one (docker load restores its tags).
load_from_cache() {
    local file=$CACHE/$1-$2.tar started=$EPOCHREALTIME
    [[ -f $file ]] || return 1
    docker load -q <"$file" >/dev/null || { log "$file did not load; rebuilding"; rm -f "$file"; return 1; }
    log "loaded $file in $(elapsed_since "$started") s"
}

# --- the base: Debian bookworm from the Debian package registry -----------------------------------------------------

BASE_REF=
ensure_base() {
    if [[ -n ${MMFT_BASE_IMAGE:-} ]]; then
        BASE_REF=$MMFT_BASE_IMAGE
        image_id "$BASE_REF" >/dev/null || fail "MMFT_BASE_IMAGE=$BASE_REF is not a local image (docker pull it first)"
        return
    fi
    local key rootfs_tar staging started
    key=$(printf '%s\n' "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$BASE_PACKAGES" "$(declare -f make_rootfs)" | sha)
    BASE_REF=mmft-base:$DEBIAN_SUITE-$key
    image_id "$BASE_REF" >/dev/null && return
    rootfs_tar=$CACHE/rootfs-$DEBIAN_SUITE-$key.tar.zst
    if [[ ! -f $rootfs_tar ]]; then
        command -v debootstrap >/dev/null \
            || fail "debootstrap makes the base image here (no registry); install it: apt-get install -y debootstrap"
        command -v zstd >/dev/null || fail "zstd compresses the base's root filesystem; install it: apt-get install -y zstd"
        started=$EPOCHREALTIME
        staging=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        trap 'rm -rf "$staging"' EXIT
        make_rootfs "$staging/root"
        tar -C "$staging/root" --numeric-owner -cf - . | zstd -q -T0 -o "$rootfs_tar.partial"
        mv "$rootfs_tar.partial" "$rootfs_tar"
        rm -rf "$staging"
        trap - EXIT
        log "Debian $DEBIAN_SUITE root filesystem made in $(elapsed_since "$started") s: $rootfs_tar"
    fi
    zstd -q -d -c "$rootfs_tar" | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' - "$BASE_REF" >/dev/null
    log "imported $BASE_REF"
}

make_rootfs() {
    local dir=$1
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" >&2 \
        || fail "debootstrap failed (log: $dir/debootstrap/debootstrap.log)"
    # Only what an image needs: no package lists, caches or documentation.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
        "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/* "$dir"/var/log/*.log
    # Pods resolve names through the runtime's resolv.conf and hosts; these are the builder's.
    : >"$dir/etc/resolv.conf"
    : >"$dir/etc/hostname"
}

# --- the project's images -----------------------------------------------------------------------------------------

# Everything a build reads from the context; the key of a final image hashes these files.
SOURCES=(Dockerfile .dockerignore pyproject.toml README.md docker operator trainer evaluator dataprep storage localcluster)
tree_key() {
    (cd "$ROOT" && find "${SOURCES[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z \
        | xargs -0 sha256sum) | sha
}
deps_inputs_key() { # what a dependency stage reads: the Dockerfile, its helpers and pyproject.toml
    (cd "$ROOT" && cat Dockerfile pyproject.toml docker/*) | sha
}

BUILT_SOMETHING=0
# build TARGET REF KEY BUILD_ARGS...: builds one Dockerfile target, labelled with its content key.
build() {
    local target=$1 ref=$2 key=$3 started=$EPOCHREALTIME
    shift 3
    log "building $ref (target $target)"
    local trust=()
    # Downloads during the build trust what this machine trusts (a TLS-intercepting proxy included); never baked in.
    [[ -f $HOST_CA_BUNDLE ]] && trust=(--secret "id=ca-certificates,src=$HOST_CA_BUNDLE")
    (cd "$ROOT" && "${BUILD[@]}" --target "$target" --label "$KEY_LABEL=$key" -t "$ref" "${trust[@]}" "$@" . >&2) \
        || fail "building $ref failed (output above)"
    BUILT_SOMETHING=1
    log "built $ref in $(elapsed_since "$started") s"
}

# ensure_deps TARGET BUILD_ARGS...: the dependency stage of TARGET as an image keyed by the Dockerfile, pyproject.toml,
# the base and the build arguments; built once, exported, loaded on a fresh engine. Sets DEPS_REF.
DEPS_REF=
ensure_deps() {
    local target=$1 key export_name=$1-deps
    shift
    # The CPU and CUDA workloads are kept side by side.
    [[ $target == workload ]] && export_name=$export_name-$TORCH_VARIANT
    key=$(printf '%s\n' "$target" "$(deps_inputs_key)" "$(image_id "$BASE_REF")" "$@" | sha)
    DEPS_REF=mmft-$target-deps:$key
    image_id "$DEPS_REF" >/dev/null && return
    load_from_cache "$export_name" "$key" && image_id "$DEPS_REF" >/dev/null && return
    build "$target-deps" "$DEPS_REF" "$key" --build-arg "BASE_IMAGE=$BASE_REF" "$@"
    save_to_cache "$export_name" "$DEPS_REF" "$key"
    forget_previous "$export_name" "$DEPS_REF"
}

# ensure_final TARGET BUILD_ARGS...: mmft-TARGET:TAG from its dependency image and the source tree.
ensure_final() {
    local target=$1 ref=mmft-$1:$TAG key deps_arg
    shift
    ensure_deps "$target" "$@"
    deps_arg=$(tr '[:lower:]-' '[:upper:]_' <<<"$target")_DEPS_IMAGE
    key=$(printf '%s\n' "$DEPS_REF" "$(tree_key)" | sha)
    if [[ $(image_key "$ref") == "$key" ]]; then
        log "$ref is up to date"
        return
    fi
    build "$target" "$ref" "$key" --build-arg "BASE_IMAGE=$BASE_REF" --build-arg "$deps_arg=$DEPS_REF" "$@"
}

ensure_tensorboard() {
    local ref=mmft-tensorboard:$TAG key
    key=$(printf '%s\n' tensorboard "$(deps_inputs_key)" "$(image_id "$BASE_REF")" | sha)
    if [[ $(image_key "$ref") == "$key" ]]; then
        log "$ref is up to date"
        return
    fi
    if load_from_cache tensorboard "$key" && [[ $(image_key "$ref") == "$key" ]]; then
        return
    fi
    build tensorboard "$ref" "$key" --build-arg "BASE_IMAGE=$BASE_REF"
    save_to_cache tensorboard "$ref" "$key"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(all)
wanted=()
for target in "${targets[@]}"; do
    case $target in
        all) wanted+=(operator workload tensorboard) ;;
        operator | workload | tensorboard | base) wanted+=("$target") ;;
        *) fail "unknown target $target: use operator, workload, tensorboard, base or all" ;;
    esac
done

ensure_docker
choose_builder
ensure_base
for target in "${wanted[@]}"; do
    case $target in
        base) echo "$BASE_REF $(image_id "$BASE_REF")" ;;
        operator) ensure_final operator && echo "mmft-operator:$TAG $(image_id "mmft-operator:$TAG")" ;;
        workload)
            ensure_final workload --build-arg "TORCH_VARIANT=$TORCH_VARIANT" \
                && echo "mmft-workload:$TAG $(image_id "mmft-workload:$TAG")"
            ;;
        tensorboard) ensure_tensorboard && echo "mmft-tensorboard:$TAG $(image_id "mmft-tensorboard:$TAG")" ;;
    esac
done
prune_superseded
if [[ $BUILT_SOMETHING == 1 ]]; then trim_build_cache; fi
