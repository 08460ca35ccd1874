"""Where runs of the control plane live, and the sweep of runs whose process was killed.

Each run has a directory ``/tmp/patronus-controlplane/<pid>-<random>``; the directory of runs is also
the lock that lets one node run on the machine at a time (a ``flock`` on it, see ``node.Node``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from patronus.controlplane.hoststate import HostStateError
from patronus.controlplane.node import remove_tree

RUNS_ROOT = Path(tempfile.gettempdir()) / "patronus-controlplane"


def sweep_abandoned_runs() -> list[Path]:
    """Remove run directories whose owning process no longer exists (it was killed before cleaning up)."""
    removed: list[Path] = []
    if not RUNS_ROOT.is_dir():
        return removed
    for run in RUNS_ROOT.iterdir():
        pid_text = run.name.split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            # A killed node's mounts that will not go: leave the directory rather than delete through them.
            with contextlib.suppress(HostStateError):
                remove_tree(run)
                removed.append(run)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
