#!/usr/bin/env bash
# Builds the project's container images without a Docker daemon, as OCI archives in a cache outside the
# checkout: the operator and the agent from the repository's Dockerfile, and the pod sandbox ("pause")
# image from images/pause. buildah (Debian's package) runs with storage of its own under the cache
# (chroot isolation), and the Dockerfile's BASE is a Debian bookworm made here with debootstrap from the
# mirror apt uses, since no image registry is reachable.
#
# Storage driver: overlay (PATRONUS_BUILDAH_DRIVER=vfs works too). vfs copies the whole root
# filesystem for every layer: measured here, a two-step build took 45 s with vfs and 2.5 s with overlay,
# and the images 11-16 minutes with vfs on a busy machine.
#
# Cached by the hash of every input (Dockerfile, .dockerignore, pyproject.toml, README.md, src/,
# images/pause/, this script): a second run is a no-op. The base has its own key (the recipe below), so a
# source change does not run debootstrap again, and buildah's layer cache keeps the Python dependencies.
#
# Prints the directory holding the archives on its last line of stdout:
#   patronus-operator.tar, patronus-agent.tar, pause.tar, and sizes.txt (uncompressed image sizes).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${PATRONUS_CACHE:-$HOME/.cache/patronus}"
driver="${PATRONUS_BUILDAH_DRIVER:-overlay}"
store="$cache_root/buildah/$driver"
suite=bookworm
base_packages=python3
ca_bundle="${PATRONUS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

for tool in buildah debootstrap gcc; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done

bah() {
    buildah --root "$store/root" --runroot "$store/run" --storage-driver "$driver" "$@"
}

# The Debian mirror apt is configured with (deb822 or one-line sources), unless PATRONUS_DEBIAN_MIRROR says.
debian_mirror() {
    if [[ -n "${PATRONUS_DEBIAN_MIRROR:-}" ]]; then echo "$PATRONUS_DEBIAN_MIRROR"; return; fi
    local found
    found="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
        /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "'"$suite"'") print uri }' | head -n1)"
    [[ -n "$found" ]] || found="$(awk '$1 == "deb" && $3 == "'"$suite"'" { print $2; exit }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
    echo "${found:-http://deb.debian.org/debian}"
}

# A minimal Debian with Python, like debian:<suite>-slim: no documentation, manual pages or locales
# (dpkg excludes them, also for what the Dockerfile installs later), no apt lists or caches.
make_base() {
    local rootfs="$1" mirror="$2"
    debootstrap --variant=minbase --include="$base_packages" "$suite" "$rootfs" "$mirror" >&2
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/patronus-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,info}/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
        "$rootfs"/var/log/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    echo "APT::Install-Recommends \"false\";" > "$rootfs/etc/apt/apt.conf.d/99patronus-no-recommends"
    # Stray files of the build host that the image must not carry.
    : > "$rootfs/etc/resolv.conf"
    : > "$rootfs/etc/hostname"
}

# The base image in buildah's storage, from its cached archive, or made and archived now.
ensure_base() {
    local mirror key name archive
    mirror="$(debian_mirror)"
    key="$(cat <(declare -f make_base) <(echo "$suite $base_packages $mirror") | sha256sum | cut -c1-16)"
    name="localhost/patronus-base:$suite-$key"
    archive="$cache_root/base-$key/base.tar"
    if bah inspect --type image "$name" >/dev/null 2>&1; then echo "$name"; return; fi
    if [[ ! -f "$archive" ]]; then
        local t0=$SECONDS tmp
        echo "==> making the base image: debootstrap $suite from $mirror (about a minute)" >&2
        tmp="$(mktemp -d "$cache_root/base-$key.XXXXXX")"
        make_base "$tmp/rootfs" "$mirror"
        tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/rootfs.tar" .
        local container
        container="$(bah from --quiet scratch)"
        bah add --quiet "$container" "$tmp/rootfs.tar" / >/dev/null
        bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --cmd /bin/bash "$container"
        bah commit --quiet --rm "$container" "$name" >/dev/null
        mkdir -p "$(dirname "$archive")"
        bah push --quiet "$name" "oci-archive:$archive.partial:$name" >/dev/null
        mv "$archive.partial" "$archive"
        rm -rf "$tmp"
        echo "    base image made in $((SECONDS - t0))s" >&2
    else
        bah pull --quiet "oci-archive:$archive" >/dev/null
        bah tag "$(bah images --quiet --filter reference="$name" | head -n1)" "$name" 2>/dev/null || true
    fi
    echo "$name"
}

inputs_key() {
    cd "$here"
    {
        # web/package-lock.json stands for the dashboard's vendored files (git-ignored, in the wheel).
        git ls-files --cached --others --exclude-standard -- Dockerfile .dockerignore pyproject.toml \
            README.md src images/pause web/package-lock.json | sort | while read -r file; do
            [[ -f "$file" ]] && echo "$file $(sha256sum < "$file")"
        done
        sha256sum < "${BASH_SOURCE[0]}"
        sha256sum < "$wireguard_go"
        debian_mirror
    } | sha256sum | cut -c1-16
}

# The agent's wireguard-go, built from its Go module and cached (a no-op when current).
wireguard_go="$("$here/scripts/build-wireguard-go.sh" | tail -n1)"
key="$(inputs_key)"
out="$cache_root/images-$key"
if [[ -f "$out/.complete" ]]; then
    echo "images are current in $out" >&2
    echo "$out"
    exit 0
fi

# buildah leaves these on the host whatever its --root; remove them again if this run made them.
leftovers=(/var/lib/containers /etc/cni/net.d/cni.lock /etc/cni/net.d /etc/cni)
existed=()
for path in "${leftovers[@]}"; do [[ -e "$path" ]] && existed+=("$path"); done
cleanup() {
    bah rm --all >/dev/null 2>&1 || true
    rm -rf "$out.partial"
    for path in "${leftovers[@]}"; do
        [[ " ${existed[*]} " == *" $path "* ]] && continue
        case "$path" in
            /var/lib/containers) rm -rf "$path" ;;
            *.lock) rm -f "$path" ;;
            *) rmdir "$path" 2>/dev/null || true ;;
        esac
    done
}
trap cleanup EXIT
trap "exit 1" INT TERM  # so that the EXIT trap also runs when the build is stopped

start=$SECONDS
mkdir -p "$store" "$cache_root"
base="$(ensure_base)"
tmp="$out.partial"
rm -rf "$tmp"
mkdir -p "$tmp/pause" "$tmp/wireguard-go"
cp "$wireguard_go" "$tmp/wireguard-go/"

stage() {
    local target="$1" name="$2" secret=()
    # The machine's CA bundle, for a TLS proxy between here and PyPI (the Dockerfile's optional secret).
    [[ -f "$ca_bundle" ]] && secret=(--secret "id=ca-bundle,src=$ca_bundle")
    bah build --quiet --layers --isolation chroot --network host --build-arg "BASE=$base" "${secret[@]}" \
        --build-context "wireguard-go=$tmp/wireguard-go" \
        --target "$target" --tag "$name" --file "$here/Dockerfile" "$here" >&2
}
build() {
    local target="$1" name="$2" t0=$SECONDS
    echo "==> building $name (target $target) ..." >&2
    stage "$target" "$name"
    bah push --quiet "$name" "oci-archive:$tmp/${name%%:*}.tar:$name" >/dev/null
    echo "    $name built in $((SECONDS - t0))s" >&2
}
# Named, so that the prune below keeps its layers: the next source change reuses the installed dependencies.
echo "==> the Python dependencies (kept as a layer cache) ..." >&2
stage dependencies patronus-cache:dependencies
build operator patronus-operator:latest
build agent patronus-agent:latest

echo "==> building pause (static, FROM scratch) ..." >&2
gcc -Os -static -s -Wall -Wextra -Werror -o "$tmp/pause/pause" "$here/images/pause/pause.c"
cp "$here/images/pause/Containerfile" "$tmp/pause/"
bah build --quiet --layers --isolation chroot --network host --tag patronus-pause:latest "$tmp/pause" >&2
bah push --quiet patronus-pause:latest "oci-archive:$tmp/pause.tar:patronus-pause:latest" >/dev/null
rm -rf "$tmp/pause" "$tmp/wireguard-go"

# Uncompressed as buildah counts it, and the archive (compressed layers) as a registry would store it.
for image in patronus-operator patronus-agent patronus-pause; do
    archive="$tmp/${image#patronus-}.tar"
    [[ -f "$archive" ]] || archive="$tmp/$image.tar"
    echo "$image $(bah images --format '{{.Size}}' "$image:latest" | head -n1 | tr -d ' '), archive $(du -m "$archive" | cut -f1)MB"
done > "$tmp/sizes.txt"
# Old images and the layers only they used; the current ones stay as the layer cache for the next build.
bah rmi --prune >/dev/null 2>&1 || true
echo "built in $((SECONDS - start))s" > "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
echo "==> images built in $((SECONDS - start))s into $out" >&2
echo "$out"
