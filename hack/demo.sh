#!/usr/bin/env bash
# The seed's pipeline for real, at toy scale, on the local cluster's real node (docs/localcluster.md):
# generated ISIC-like images and labels CSV -> DatasetPrep in a container -> FineTuneJob training a tiny Gemma 3
# with Axolotl on CPU -> export to a GCS emulator -> Evaluation of base vs tuned, with the operator itself running
# as a pod from its image under its own ServiceAccount. kwok still plays the GKE GPU nodes; nothing of this
# pipeline runs there (the samples ask for no GPU and their namespace is pinned to the real node).
# Needs root, Docker (images are built with localcluster/build-images.sh) and the real node's Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE=${NAMESPACE:-mmft-demo}
STATE_DIR=${MMFT_STATE_DIR:-$PWD/.state/localcluster}
export MMFT_STATE_DIR=$STATE_DIR
SAMPLES=deploy/localcluster/samples/tiny-pipeline
BUCKET=mmft-local
# The images' tag, as for localcluster/build-images.sh (deploy/localcluster/values.yaml names :dev).
TAG=${MMFT_IMAGE_TAG:-dev}
started=$EPOCHREALTIME
elapsed() { awk -v start="$started" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.0f", now - start }'; }
say() { echo "demo [$(elapsed) s]: $*" >&2; }

say "building the images (cached by content)"
bash localcluster/build-images.sh operator workload tensorboard >&2

say "starting the local cluster with its real node"
KUBECONFIG=$(mmft cluster up --real-node)
export KUBECONFIG
KUBECTL=$(python3 -c 'from mmft_localcluster import kubectl_path; print(kubectl_path())')
k() { "$KUBECTL" "$@"; }

say "loading the images into the node (docker save | ctr import; skipped when loaded)"
mmft cluster load-image "mmft-operator:$TAG" "mmft-workload:$TAG" "mmft-tensorboard:$TAG"

say "writing the inputs into the bucket folder (in the workload image: the host needs no torch)"
bucket_dir=$(mmft cluster bucket "$BUCKET")
docker run --rm --network=none --user=1000:1000 --entrypoint=python \
    -v "$PWD:/src:ro" -v "$bucket_dir:/bucket" "mmft-workload:$TAG" /src/hack/write_demo_inputs.py /bucket

say "installing mmft with its Helm chart (deploy/localcluster/values.yaml, images :$TAG)"
mmft cluster install-mmft --tag "$TAG"

say "running the pipeline in namespace $NAMESPACE"
k delete namespace "$NAMESPACE" --ignore-not-found --wait=true >/dev/null
mmft cluster real-namespace "$NAMESPACE" >/dev/null
k -n "$NAMESPACE" apply -k "$SAMPLES" >/dev/null
for resource in datasetprep/tiny-isic finetunejob/tiny-gemma3 evaluation/tiny-gemma3; do
    k -n "$NAMESPACE" wait "$resource" --for=condition=Succeeded --timeout=900s >/dev/null
    say "$resource Succeeded"
done
pipeline_seconds=$(elapsed)
echo
k -n "$NAMESPACE" get mmft
echo
k -n "$NAMESPACE" get pods -o custom-columns='POD:.metadata.name,NODE:.spec.nodeName,PHASE:.status.phase,CONTAINER:.status.containerStatuses[0].containerID'
echo
k -n "$NAMESPACE" rollout status deployment/tiny-gemma3-tensorboard --timeout=180s >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
k -n "$NAMESPACE" port-forward svc/tiny-gemma3-tensorboard "$port:80" >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true' EXIT
code=000
for _ in $(seq 60); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
    [[ $code == 200 ]] && break
    sleep 0.5
done
kill $forward 2>/dev/null || true
say "TensorBoard through kubectl port-forward svc/tiny-gemma3-tensorboard: HTTP $code"
[[ $code == 200 ]]
cat <<MSG

The pipeline reached Succeeded in real containers in ${pipeline_seconds} s (this run: $(elapsed) s in all). Explore it:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL -n $NAMESPACE describe ftj tiny-gemma3
  $KUBECTL -n $NAMESPACE port-forward svc/tiny-gemma3-tensorboard 6006:80     # TensorBoard on http://127.0.0.1:6006
  ls $bucket_dir/evaluations/tiny-gemma3                                    # report.html, metrics.json
Stop everything with: mmft cluster down
MSG
