"""Waiting for the control plane's processes: poll a health endpoint with a growing delay, and when the
process dies or time runs out, fail with the last lines of its log (the only useful clue at that point).
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from patronus.controlplane.binaries import ControlPlaneError, tail
from patronus.controlplane.certs import PkiFiles


def wait_until(
    ready: Callable[[], bool],
    what: str,
    log: Path,
    *,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once ``ready()`` is true (an exception counts as not yet); raise ControlPlaneError if
    ``process`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ControlPlaneError(
                f"{what}: the process exited with code {process.returncode}; last lines of {log.name}:\n"
                f"{tail(log)}"
            )
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ControlPlaneError(
        f"timed out after {timeout:.0f}s waiting for {what}; last lines of {log.name}:\n{tail(log)}"
    )


def admin_tls(pki: PkiFiles, verify: bool = True) -> ssl.SSLContext:
    """The admin's client certificate; ``verify`` False for components that serve self-signed certs."""
    if verify:
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def https_status(url: str, context: ssl.SSLContext) -> int:
    """The HTTP status of a GET (an error status too), or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0
