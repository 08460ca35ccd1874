#!/usr/bin/env bash
# Prints the directory of prometheus-operator's CRDs (monitoring.coreos.com) at the version
# tools/prometheus-operator/go.mod pins. The module comes from the Go module proxy into the Go module
# cache, checked against go.sum; a second run finds it there. The chart's tests install the
# ServiceMonitor, PodMonitor and PrometheusRule CRDs from it into their API server, so the chart's
# objects are validated by the API server against upstream's own schemas.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module=github.com/prometheus-operator/prometheus-operator
cd "$here/tools/prometheus-operator"
export GOFLAGS="-mod=readonly -buildvcs=false"
go mod download "$module"
dir="$(go list -m -f '{{.Dir}}' "$module")/example/prometheus-operator-crd"
[[ -f "$dir/monitoring.coreos.com_servicemonitors.yaml" ]] || { echo "error: no CRDs in $dir" >&2; exit 1; }
echo "$dir"
