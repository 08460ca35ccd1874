#!/usr/bin/env bash
# End-to-end tests against whatever cluster KUBECONFIG names (a real cluster, or `patronus dev up`).
# They create and delete their own namespaces and need permission to install the CRDs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${KUBECONFIG:?set KUBECONFIG to the cluster to test (for a local one: eval \"\$(patronus dev up)\")}"
export KUBECONFIG

if ! command -v kubectl >/dev/null; then
    # No kubectl installed: use the one built with the control plane.
    PATH="$("$here/scripts/build-controlplane.sh"):$PATH"
    export PATH
fi
python="${PYTHON:-$here/.venv/bin/python}"
echo "==> end-to-end tests against $(kubectl config current-context) ($(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'))" >&2
exec "$python" -m pytest "$here/tests/e2e" -p no:cacheprovider "$@"
