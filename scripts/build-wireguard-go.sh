#!/usr/bin/env bash
# Builds wireguard-go (userspace WireGuard, with the TUN offloads GSO/GRO that Debian's 2022 build lacks)
# from its upstream Go module (tools/wireguard-go) into a cache outside the checkout, keyed by the
# module's go.mod/go.sum, the Go version and the build flags, so a fresh clone on the same machine reuses
# it. A second run is a no-op. It also points $cache/bin/wireguard-go at the build, which the agent
# prefers to the wireguard-go on PATH (see patronus.agent.dataplane.userspace).
#
# Measured on this machine (2 cores): a build takes about 7 s once the modules are downloaded.
#
# Prints the path of the binary on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="$here/tools/wireguard-go"
cache_root="${PATRONUS_CACHE:-$HOME/.cache/patronus}"
ldflags="-s -w"
key="$(cat "$module/go.mod" "$module/go.sum" <(go env GOVERSION GOOS GOARCH) <(echo "$ldflags") \
    | sha256sum | cut -c1-16)"
out="$cache_root/wireguard-go-$key"
link="$cache_root/bin/wireguard-go"

publish() {
    mkdir -p "$cache_root/bin"
    # Atomic replace: an agent starting now sees the old build or the new one, never no file.
    ln -sfn "$out/wireguard-go" "$link.tmp.$$"
    mv -T "$link.tmp.$$" "$link"
    echo "$out/wireguard-go"
}

if [[ -x "$out/wireguard-go" && -f "$out/.complete" ]]; then
    echo "wireguard-go is current in $out" >&2
    publish
    exit 0
fi

version="$(awk '$1 == "require" && $2 == "golang.zx2c4.com/wireguard" {print $3}' "$module/go.mod")"
tmp="$out.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$module"
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
start=$SECONDS
echo "==> building wireguard-go $version ..." >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/wireguard-go" golang.zx2c4.com/wireguard
echo "$version built in $((SECONDS - start))s" > "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
echo "==> wireguard-go built in $((SECONDS - start))s into $out" >&2
publish
