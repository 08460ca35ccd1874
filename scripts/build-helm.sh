#!/usr/bin/env bash
# Builds the Helm 3 client from its upstream Go module (tools/helm) into a cache outside the checkout,
# keyed by the module's go.mod/go.sum and the build flags, so a fresh clone on the same machine reuses it
# and a second run is a no-op. The version ldflags are those of Helm's own Makefile, so `helm version`
# and the Kubernetes version `helm template` assumes are what a released binary reports.
#
# Prints the directory holding the binary on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$here/tools/helm"
cache_root="${PATRONUS_CACHE:-$HOME/.cache/patronus}"
# Bump when the build command or its flags below change.
recipe="CGO_ENABLED=0 -trimpath -ldflags=version,k8sVersion"
key="$(cat "$module/go.mod" "$module/go.sum" <(echo "$recipe") | sha256sum | cut -c1-16)"
out="$cache_root/helm-$key"

if [[ -x "$out/helm" && -f "$out/.complete" ]]; then
    echo "helm is current in $out" >&2
    echo "$out"
    exit 0
fi

cd "$module"
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
helm_version="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/client-go)"   # v0.MINOR.PATCH: Kubernetes 1.MINOR
k8s_minor="$(echo "$k8s_version" | cut -d. -f2)"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

tmp="$out.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$SECONDS
echo "==> building helm $helm_version (cold: 2-6 minutes on 2 shared cores)" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
echo "built in $((SECONDS - start))s" > "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
echo "==> helm built in $((SECONDS - start))s into $out" >&2
echo "$out"
