"""Running ``ip``, ``wg``, ``nft`` and ``tc``, optionally inside a network namespace.

Planners return argument lists; only a :class:`Runner` executes them, so a test can pass a
:class:`RecordingRunner` and check exactly which commands a change would issue.

Secrets (a WireGuard private key) only ever travel on stdin (``input``): arguments are safe to log and to
quote in :class:`CommandError`, and ``input`` is never logged or quoted. A failed command's stdout is
quoted too (wireguard-go reports why it could not start there, not on stderr), with anything shaped like
a WireGuard key blanked, since ``wg show ... dump`` prints the private key.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from patronus.agent.dataplane import validate

DEFAULT_TIMEOUT_SECONDS = 30.0
"""No data-plane command legitimately takes longer; a hung one must not hang the agent."""


_WIREGUARD_KEY = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_OUTPUT_LIMIT = 500
"""Characters of each stream an error keeps (the end, where a failing program says why)."""


def _quoted_output(text: str) -> str:
    """The last part of a command's output, stripped, with every WireGuard key blanked."""
    text = _WIREGUARD_KEY.sub("(key)", text.strip())
    return text if len(text) <= _OUTPUT_LIMIT else "..." + text[-_OUTPUT_LIMIT:]


class CommandError(RuntimeError):
    """A command failed: it says which command (never its stdin), the exit code, stderr and stdout."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.command = list(args)
        self.returncode = returncode
        self.stderr = _quoted_output(stderr)
        self.stdout = _quoted_output(stdout)
        details = [self.stderr] if self.stderr else []
        if self.stdout:
            details.append(f"stdout: {self.stdout}")
        detail = f": {'; '.join(details)}" if details else ""
        super().__init__(f"`{shlex.join(self.command)}` failed with exit code {returncode}{detail}")


class Runner(Protocol):
    """Runs one command; ``netns`` None means the current network namespace."""

    def __call__(
        self,
        args: Sequence[str],
        *,
        netns: str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]: ...


def in_netns(args: Sequence[str], netns: str | None) -> list[str]:
    """``args`` prefixed with ``ip netns exec <netns>`` when a namespace is given (a plain file name in
    /run/netns: no path, no option)."""
    return ["ip", "netns", "exec", validate.netns(netns), *args] if netns else list(args)


def run(
    args: Sequence[str],
    *,
    netns: str | None = None,
    input: str | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (in ``netns``), capturing text output; raise :class:`CommandError` if ``check`` fails.

    A missing executable or a timeout is also a :class:`CommandError` (exit code 127 or -1), so callers
    handle one exception type.
    """
    full = in_netns(args, netns)
    try:
        result = subprocess.run(
            full,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError as exc:
        raise CommandError(full, 127, f"executable not found: {exc.filename}") from None
    except subprocess.TimeoutExpired:
        raise CommandError(full, -1, f"timed out after {timeout:g} s") from None
    if check and result.returncode != 0:
        raise CommandError(full, result.returncode, result.stderr, result.stdout)
    return result


@dataclass
class RecordedCall:
    """One call a :class:`RecordingRunner` saw; ``input`` is kept only as whether there was one."""

    args: list[str]
    netns: str | None
    had_input: bool


@dataclass
class RecordingRunner:
    """A fake :class:`Runner` for tests: records calls; ``respond`` gives (exit code, stdout, stderr)."""

    respond: Callable[[list[str]], tuple[int, str, str]] | None = None
    calls: list[RecordedCall] = field(default_factory=list)

    def __call__(
        self,
        args: Sequence[str],
        *,
        netns: str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        self.calls.append(RecordedCall(argv, netns, input is not None))
        code, stdout, stderr = self.respond(argv) if self.respond is not None else (0, "", "")
        if check and code != 0:
            raise CommandError(argv, code, stderr, stdout)
        return subprocess.CompletedProcess(argv, code, stdout, stderr)

    @property
    def commands(self) -> list[list[str]]:
        """The argument lists, in order."""
        return [call.args for call in self.calls]
