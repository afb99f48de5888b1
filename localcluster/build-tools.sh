#!/usr/bin/env bash
# Builds the tools the tests run against deploy/ (helm, promtool) from their Go modules into the mmft cache (never
# into the repository), and copies the monitoring CRDs (Prometheus Operator, Google Cloud Managed Service for
# Prometheus) out of their modules beside them:
#   <cache>/localcluster/helm-<version>-<go>/helm, promtool-<version>-<go>/promtool,
#   monitoring-crds-<operator version>-<engine version>/{prometheus-operator,gmp}/*.yaml
# Cached per version: a second run only checks that the files exist.
# Usage: localcluster/build-tools.sh   (build.sh calls it)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_NAME=build
# shellcheck source=build-common.sh
source "$HERE/build-common.sh"

build_helm() {
    # helm's go.mod has no replace directives, so `go install module@version` builds it as released.
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

build_promtool() {
    GOBIN="$OUT_DIR" GOFLAGS="-buildvcs=false" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
}

module_dir() { GOFLAGS="-buildvcs=false" go mod download -json "$1" | awk -F'"' '$2 == "Dir" { print $4 }'; }

copy_monitoring_crds() {
    local operator engine
    operator=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
    engine=$(module_dir "github.com/GoogleCloudPlatform/prometheus-engine@$PROMETHEUS_ENGINE_VERSION")
    mkdir -p "$OUT_DIR/prometheus-operator" "$OUT_DIR/gmp"
    cp "$operator"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml \
        "$OUT_DIR/prometheus-operator/"
    cp "$engine"/charts/operator/crds/monitoring.googleapis.com_{podmonitorings,rules}.yaml "$OUT_DIR/gmp/"
    chmod u+w "$OUT_DIR"/*/*.yaml # files in Go's module cache are read-only
}

build_into "$CACHE_ROOT/helm-$HELM_VERSION-$GO_VERSION" helm helm -- build_helm
build_into "$CACHE_ROOT/promtool-$PROMETHEUS_VERSION-$GO_VERSION" promtool promtool -- build_promtool
build_into "$CACHE_ROOT/monitoring-crds-$PROMETHEUS_OPERATOR_VERSION-$PROMETHEUS_ENGINE_VERSION" monitoring-crds \
    prometheus-operator/monitoring.coreos.com_prometheusrules.yaml gmp/monitoring.googleapis.com_rules.yaml \
    -- copy_monitoring_crds
