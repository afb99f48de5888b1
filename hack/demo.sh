#!/usr/bin/env bash
# The seed's pipeline (DatasetPrep -> FineTuneJob -> Evaluation) applied at once on the local control plane.
# kwok simulates the GKE Autopilot GPU nodes and the pods; everything else (API server, CRDs with CEL, admission,
# RBAC, the Job and garbage-collection controllers, the operator) is real.
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE=${NAMESPACE:-mmft-demo}
STATE_DIR=${MMFT_STATE_DIR:-$PWD/.state/localcluster}
export MMFT_STATE_DIR=$STATE_DIR

KUBECONFIG=$(mmft cluster up)
export KUBECONFIG
KUBECTL=$(python3 -c 'from mmft_localcluster import kubectl_path; print(kubectl_path())')
k() { "$KUBECTL" "$@"; }

k apply --server-side -k crds/ >/dev/null
k wait --for=condition=Established crd -l app.kubernetes.io/part-of=mmft --timeout=60s >/dev/null

mkdir -p "$STATE_DIR"
if [[ -f "$STATE_DIR/operator.pid" ]] && kill -0 "$(cat "$STATE_DIR/operator.pid")" 2>/dev/null; then
    echo "operator already running (pid $(cat "$STATE_DIR/operator.pid"))"
else
    nohup mmft operator --all-namespaces --liveness= >"$STATE_DIR/operator.log" 2>&1 &
    echo $! >"$STATE_DIR/operator.pid"
    echo "operator started (log: $STATE_DIR/operator.log)"
fi

k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NAMESPACE" create serviceaccount mmft-workload --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NAMESPACE" create secret generic huggingface-credentials --from-literal=token=hf_demo_placeholder \
    --dry-run=client -o yaml | k apply -f - >/dev/null
k -n "$NAMESPACE" apply -k deploy/samples/gemma3-melanoma

for resource in datasetprep/isic2020 finetunejob/gemma3-melanoma evaluation/gemma3-melanoma; do
    k -n "$NAMESPACE" wait "$resource" --for=condition=Succeeded --timeout=180s
done
echo
k -n "$NAMESPACE" get mmft
echo
k -n "$NAMESPACE" get jobs,pods,pvc,svc,deploy -o wide
cat <<MSG

The pipeline reached Succeeded on the simulated nodes. Explore it:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL -n $NAMESPACE describe ftj gemma3-melanoma
  mmft render deploy/samples/gemma3-melanoma/*.yaml     # the same children without a cluster
Stop everything with: kill \$(cat $STATE_DIR/operator.pid); mmft cluster down
MSG
