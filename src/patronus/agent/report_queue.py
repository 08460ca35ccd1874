"""Status reports on their way to the API server: bounded, latest wins per object, retried with backoff.

Whoever reports (a path check, the site's heartbeat) calls :meth:`ReportQueue.put`, which never waits:
the data plane must not stop because the API server is slow or gone. :meth:`ReportQueue.run` writes the
reports, each a server-side apply of the object's ``status`` (the heartbeat Lease's ``spec``) under the
agent's field manager.

- **Latest wins**: at most one report per object is pending; a newer one replaces it. After a minute
  without the API server a path's status is its latest check, not sixty of them.
- **Bounded**: at most ``max_pending`` objects wait; beyond that the oldest report is dropped (counted),
  never an ``essential`` one (the agent's own Site).
- **Order**: objects are written in the order they were first queued.
- **Failures**: an unreachable API server, 429 or 5xx pause the whole queue with jittered exponential
  backoff (every write would fail the same way; the report stays queued unless a newer one replaced it).
  A 404 means the object is gone: the report is dropped and ``on_not_found`` is told (for the agent's own
  Site that means stop). Any other refusal (4xx) is dropped with a warning (it would fail again) and
  ``on_refused`` is told (a heartbeat Lease the agent may not create is missing: 403, not 404).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from patronus.api.agentconfig import MAX_PATHS
from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.resource import ResourceKind
from patronus.runtime.clock import Clock
from patronus.runtime.informer import Backoff
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

FIELD_MANAGER = "patronus-agent"
MAX_PENDING = MAX_PATHS + 64
"""One report per object is pending at most: room for every Path a configuration may hold, and the Site."""
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0

Key = tuple[str, str, str]  # (plural, namespace, name)


@dataclass(frozen=True)
class Report:
    """The agent's fields of one object's ``status``."""

    kind: ResourceKind
    namespace: str
    name: str
    status: dict[str, Any]
    """The agent's fields of the object's ``part``."""
    essential: bool = False
    """Never the one the bound drops (the agent's own Site and heartbeat Lease: they say it is alive)."""
    part: Literal["status", "spec"] = "status"
    """``status`` (through the status subresource), or ``spec`` for the heartbeat Lease, which has none."""

    @property
    def key(self) -> Key:
        return (self.kind.plural, self.namespace, self.name)

    @property
    def subresource(self) -> str | None:
        return "status" if self.part == "status" else None

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            self.part: self.status,
        }


@dataclass
class QueueStats:
    written: int = 0
    failed: int = 0
    """Attempts that will be retried."""
    dropped: int = 0
    """Reports given up: refused, their object gone, or pushed out by the bound."""


class ReportQueue:
    """See the module docstring."""

    def __init__(
        self,
        client: KubeClient,
        *,
        clock: Clock,
        field_manager: str = FIELD_MANAGER,
        max_pending: int = MAX_PENDING,
        backoff: Backoff | None = None,
        on_not_found: Callable[[Report], None] = lambda _report: None,
        on_refused: Callable[[Report], None] = lambda _report: None,
    ) -> None:
        self._client = client
        self._clock = clock
        self.field_manager = field_manager
        self.max_pending = max_pending
        self._backoff = backoff or Backoff(BACKOFF_INITIAL, BACKOFF_MAX)
        self._on_not_found = on_not_found
        self._on_refused = on_refused
        self._pending: OrderedDict[Key, Report] = OrderedDict()
        self._full = False
        self._wake = asyncio.Event()
        self.stats = QueueStats()
        self.last_error: str | None = None
        """Why the latest write failed; None once a write succeeds."""

    @property
    def backlog(self) -> int:
        """Reports waiting to be written."""
        return len(self._pending)

    def put(self, report: Report) -> None:
        """Queue ``report`` in place of any pending report of the same object; never blocks."""
        new = report.key not in self._pending
        self._pending[report.key] = report  # a replaced report keeps its place in the order
        if new and len(self._pending) > self.max_pending:
            self._drop_oldest()
        self._wake.set()

    def _drop_oldest(self) -> None:
        victim = next((key for key, queued in self._pending.items() if not queued.essential), None)
        if victim is None:
            return
        del self._pending[victim]
        self.stats.dropped += 1
        if not self._full:  # once per episode: a long outage with many paths would drop one per check
            log.warning("report queue full; dropping the oldest reports", bound=self.max_pending)
        self._full = True

    def pending(self, kind: ResourceKind, namespace: str, name: str) -> Report | None:
        return self._pending.get((kind.plural, namespace, name))

    async def run(self) -> None:
        """Write reports until cancelled."""
        while True:
            if not self._pending:
                self._full = False
                self._wake.clear()
                await self._wake.wait()
                continue
            _, report = self._pending.popitem(last=False)
            delay = await self._write(report)
            if delay:
                await self._clock.sleep(delay)

    async def _write(self, report: Report) -> float:
        """Write one report; the seconds to pause the queue afterwards (0 to go on)."""
        try:
            await self._client.apply(
                report.manifest(),
                field_manager=self.field_manager,
                force=True,
                subresource=report.subresource,
                kind=report.kind,
            )
        except NotFoundError:
            self.stats.dropped += 1
            log.info("object gone; its report is dropped", kind=report.kind.kind, name=report.name)
            self._on_not_found(report)
            return 0.0
        except ApiError as error:
            if error.status == 429 or error.status >= 500:
                return self._retry_later(report, str(error))
            self.stats.dropped += 1
            log.warning("report refused", kind=report.kind.kind, name=report.name, error=str(error))
            self._on_refused(report)
            return 0.0
        except Exception as error:  # unreachable, timed out, connection broken: the API comes back later
            return self._retry_later(report, repr(error) if not str(error) else str(error))
        self.stats.written += 1
        if self.last_error is not None:
            log.info("reports are written again", backlog=self.backlog)
        self.last_error = None
        self._backoff.reset()
        return 0.0

    def _retry_later(self, report: Report, error: str) -> float:
        self.stats.failed += 1
        if report.key not in self._pending:  # not replaced by a newer report meanwhile: it goes first
            self._pending[report.key] = report
            self._pending.move_to_end(report.key, last=False)
        delay = self._backoff.next()
        if self.last_error is None:
            log.warning("cannot write reports; retrying with backoff", error=error, backlog=self.backlog)
        self.last_error = error
        return delay
