"""The lab's supervisor process as the CLI sees it: started detached, followed through its progress file
until its ready file appears, stopped with SIGTERM (SIGKILL to its group if it hangs), and swept up after
when it was killed and left its namespaces behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from patronus.lab import network
from patronus.lab.files import LabFiles

STARTUP_TIMEOUT_S = 300.0
SHUTDOWN_TIMEOUT_S = 60.0


def running_pid(files: LabFiles) -> int | None:
    try:
        pid = int(files.pid.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def read_ready(files: LabFiles) -> dict[str, Any] | None:
    try:
        ready: dict[str, Any] = json.loads(files.ready.read_text())
    except (OSError, ValueError):
        return None
    return ready


def spawn_supervisor(files: LabFiles, sites: int, prefix: str) -> subprocess.Popen[bytes]:
    """Detached (own session, no terminal), so it outlives this command and ignores its Ctrl-C."""
    files.logs.mkdir(parents=True, exist_ok=True)
    files.ready.unlink(missing_ok=True)
    files.progress.unlink(missing_ok=True)
    args = [sys.executable, "-m", "patronus", "lab", "serve", f"--sites={sites}", f"--prefix={prefix}"]
    with files.supervisor_log.open("ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    files.pid.write_text(f"{process.pid}\n")
    return process


def _follow(files: LabFiles, seen: int) -> int:
    """Echo the supervisor's new progress lines to stderr; returns how many lines were shown so far."""
    try:
        lines = files.progress.read_text().splitlines()
    except OSError:
        return seen
    for line in lines[seen:]:
        click.echo(f"  {line}", err=True)
    return max(seen, len(lines))


def wait_ready(files: LabFiles, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    seen = 0
    while (ready := read_ready(files)) is None:
        seen = _follow(files, seen)
        if process.poll() is not None or time.monotonic() > deadline:
            stop_supervisor(files, process.pid)
            tail = files.supervisor_log.read_text(errors="replace")[-4000:]
            raise click.ClickException(f"the lab did not start; see {files.supervisor_log}:\n{tail}")
        time.sleep(0.2)
    _follow(files, seen)
    return ready


def stop_supervisor(files: LabFiles, pid: int) -> bool:
    """SIGTERM and wait for the supervisor's own clean-up; SIGKILL its group if it hangs. True if killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _alive(pid: int) -> bool:
    """Alive and not a zombie (``lab up`` may be the parent of a supervisor that failed to start)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def sweep(files: LabFiles) -> list[str]:
    """Remove what a supervisor that was killed left: its namespaces (with all in them) and files."""
    left: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        plan = files.load_plan()
        left = sorted(set(network.namespaces_present(plan.prefix)) & set(plan.namespaces))
        if left:
            network.destroy(plan)
    files.clean()
    return left
