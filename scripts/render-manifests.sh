#!/usr/bin/env bash
# Writes the plain manifests of `kubectl apply -f deploy/crds/ -f deploy/operator/` from the Helm chart
# with its default values, so the two ways to install can never differ:
#   deploy/operator/rbac.yaml      the ServiceAccount, Roles and RoleBindings
#   deploy/operator/operator.yaml  the ConfigMap, metrics Service, Deployment and PodDisruptionBudget
# (namespace.yaml is written by hand: `helm install --create-namespace` makes the namespace instead), and
# copies deploy/crds/ (generated from the models by `patronus crds`) into the chart's crds/ and
# deploy/monitoring/rules.yaml into the chart's monitoring/ (its PrometheusRule's spec).
#
# Usage: scripts/render-manifests.sh [OUT_DIR]   (default deploy/operator; the tests render elsewhere
# and compare). `make manifests` runs it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/deploy/operator}"
chart="$here/deploy/helm/patronus-operator"
helm="$("$here/scripts/build-helm.sh")/helm"

header() {
    cat <<HEADER
# Generated from the Helm chart deploy/helm/patronus-operator with its default values by
# scripts/render-manifests.sh (helm template patronus-operator --namespace patronus-system).
# Do not edit: change the chart, then run \`make manifests\`. A test keeps this file current.
HEADER
}

rendered="$("$helm" template patronus-operator "$chart" --namespace patronus-system)"
mkdir -p "$out"
# Each document starts with "---" and "# Source: patronus-operator/templates/NAME"; split by NAME.
awk -v rbac="$out/rbac.yaml.partial" -v operator="$out/operator.yaml.partial" '
    /^---$/ { separator = 1; next }
    separator && /^# Source: / {
        file = ($3 ~ /\/(rbac|serviceaccount)\.yaml$/) ? rbac : operator
        if (seen[file]++) print "---" > file
        separator = 0
    }
    { print > file }
' <<<"$rendered"
for name in rbac operator; do
    { header; cat "$out/$name.yaml.partial"; } > "$out/$name.yaml"
    rm "$out/$name.yaml.partial"
done

if [[ -z "${1:-}" ]]; then
    rm -f "$chart"/crds/*.yaml
    cp "$here"/deploy/crds/*.yaml "$chart/crds/"
    cp "$here/deploy/monitoring/rules.yaml" "$chart/monitoring/rules.yaml"
fi
