"""The files of a lab, in one directory per prefix, named here once so the supervisor and the CLI agree.

Under ``$PATRONUS_CACHE/lab/<prefix>``: the supervisor's pid, the plan (written first, so a lab killed
with ``-9`` can still be cleaned up), the ready file (written last), the admin and agent kubeconfigs,
the control socket, the progress log ``lab up`` follows, and ``logs/``, which outlives the lab.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from patronus.lab.plan import LabPlan, plan_lab


def lab_home() -> Path:
    """Where every lab keeps its files: ``$PATRONUS_CACHE/lab`` (default ``~/.cache/patronus/lab``)."""
    return Path(os.environ.get("PATRONUS_CACHE", Path.home() / ".cache" / "patronus")) / "lab"


@dataclass(frozen=True)
class LabFiles:
    """The files of one lab (one prefix), shared by the supervisor and the CLI so they agree on names."""

    root: Path

    @classmethod
    def for_prefix(cls, prefix: str) -> LabFiles:
        return cls(lab_home() / prefix)

    @property
    def pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def ready(self) -> Path:
        """Written last by the supervisor: the lab is up; holds the admin kubeconfig path and the sites."""
        return self.root / "ready.json"

    @property
    def plan(self) -> Path:
        """Written first: how to rebuild the plan (for ``impair``, and to clean up after a ``kill -9``)."""
        return self.root / "plan.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def control(self) -> Path:
        """The supervisor's control socket (in a directory only its owner may enter)."""
        return self.root / "control" / "supervisor.sock"

    @property
    def progress(self) -> Path:
        return self.root / "progress.log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def agent_kubeconfig(self, site: str) -> Path:
        return self.root / "agents" / f"{site}.kubeconfig"

    def agent_log(self, site: str) -> Path:
        return self.logs / f"agent-{site}.log"

    def relay_log(self) -> Path:
        return self.logs / "relay.log"

    def load_plan(self) -> LabPlan:
        """The saved plan; ``FileNotFoundError`` when no lab was started with this prefix."""
        saved = json.loads(self.plan.read_text())
        return plan_lab(saved["sites"], saved["underlays"], saved["prefix"])

    def save_plan(self, plan: LabPlan) -> None:
        data = {"prefix": plan.prefix, "sites": [s.name for s in plan.sites], "underlays": plan.underlays}
        write_atomic(self.plan, json.dumps(data, indent=2) + "\n")

    def clean(self) -> None:
        """Remove everything but the logs, which are what one reads after a lab went wrong."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry == self.logs:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers (the CLI polling for the ready file) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    # Created with its mode (a token file is never readable by others, not even for a moment); fchmod
    # because the umask may have taken bits of it away.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)
    tmp.replace(path)
