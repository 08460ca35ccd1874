"""Which wireguard-go runs an interface when the kernel has no WireGuard module.

In order: ``$PATRONUS_WIREGUARD_GO`` (an absolute path to the binary), else the build that
``scripts/build-wireguard-go.sh`` publishes as ``$PATRONUS_CACHE/bin/wireguard-go`` (default
``~/.cache/patronus/bin/wireguard-go``: the current upstream module, with the TUN offloads GSO/GRO), else
``wireguard-go`` on ``PATH`` (Debian's package, kept as the fallback). An image for the agent installs
its build on ``PATH`` ahead of the distribution's (for example ``/usr/local/bin``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_BINARY = "PATRONUS_WIREGUARD_GO"
FALLBACK = "wireguard-go"


class WireGuardGoNotFound(RuntimeError):
    """``$PATRONUS_WIREGUARD_GO`` names something that is not an executable file."""


def cache_binary(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the build script publishes its binary."""
    root = environ.get("PATRONUS_CACHE") or str(Path.home() / ".cache" / "patronus")
    return Path(root) / "bin" / "wireguard-go"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def wireguard_go_binary(environ: Mapping[str, str] = os.environ) -> str:
    """The wireguard-go to start (see the module docstring for the order)."""
    configured = environ.get(ENV_BINARY)
    if configured:
        path = Path(configured)
        if not path.is_absolute() or not _executable(path):
            raise WireGuardGoNotFound(f"{ENV_BINARY}={configured} is not an absolute path to an executable")
        return str(path)
    cached = cache_binary(environ)
    if _executable(cached):
        return str(cached.resolve())
    return FALLBACK
