#!/usr/bin/env bash
# Everything the tests need on a fresh machine of this kind: Debian packages, the Python virtualenv,
# the control-plane and node binaries, wireguard-go, helm and the container images (each built once,
# cached in ~/.cache/patronus by the hash of its inputs). Safe to run again: each step is skipped when
# it is already done, so a second run is a no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# Debian packages, without their recommends (wireguard-tools alone would pull a kernel image):
# - the data plane: wireguard-go, wireguard-tools, nftables, iproute2, procps;
# - Prometheus (promtool checks the exporters' output and the alert rules; the lab runs its server) and
#   Chromium for the dashboard's browser tests;
# - the node: containerd and runc (the CRI runtime), the CNI reference plugins (bridge, host-local,
#   loopback, portmap in /usr/lib/cni), util-linux (nsenter);
# - the images: buildah, debootstrap (the base image), gcc and libc6-dev (the static pause program).
packages=(wireguard-go wireguard-tools nftables iproute2 procps prometheus chromium
          containerd runc containernetworking-plugins util-linux
          buildah debootstrap gcc libc6-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "==> installing Debian packages: ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtualenv, reinstalled only when pyproject.toml changed.
stamp="$venv/.patronus-installed"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$here/pyproject.toml" -nt "$stamp" ]]; then
    echo "==> creating the virtualenv in $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip==25.3
    "$venv/bin/pip" install -q -e "$here[dev]"
    touch "$stamp"
fi

# The dashboard's browser libraries, pinned in web/package-lock.json, copied into the package.
"$here/scripts/vendor-web.sh"

command -v go >/dev/null || { echo "error: Go 1.26 is needed to build the control plane" >&2; exit 1; }
"$here/scripts/build-controlplane.sh" >/dev/null
# The agent prefers this build to Debian's wireguard-go (kept as the fallback): it has the TUN offloads.
"$here/scripts/build-wireguard-go.sh" >/dev/null
# Helm, for the chart's tests and `make chart-repo`.
"$here/scripts/build-helm.sh" >/dev/null
"$here/scripts/build-images.sh" >/dev/null
