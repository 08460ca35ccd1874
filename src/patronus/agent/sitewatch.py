"""Whether the agent's Site still exists: the signal that ends an agent for good.

A Site deleted while the operator is down (or an external branch box that no one will ever reconfigure)
must not leave a configured data plane behind. The agent watches its own Site; a ``DELETED`` event, a
list without it, or a 404 on a report of it (:meth:`SiteWatch.not_found`) sets :attr:`SiteWatch.gone`,
and the agent tears its data plane down and exits 0. Anything less certain (the API unreachable, 403 or
401) is not taken as deletion: tearing down a WAN on an RBAC hiccup would be worse.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from patronus.kube.client import KubeClient
from patronus.kube.resource import SITE
from patronus.runtime.clock import Clock
from patronus.runtime.informer import Informer
from patronus.runtime.logs import get_logger

log = get_logger(__name__)


class SiteWatch:
    """Watches one Site; keeps the latest object (for Events about it) and whether it is gone."""

    def __init__(self, client: KubeClient, namespace: str, site: str, *, clock: Clock) -> None:
        self.namespace = namespace
        self.site = site
        self.informer = Informer(client, SITE, namespace, field_selector=f"metadata.name={site}", clock=clock)
        self.informer.add_handler(self._seen, lambda _old, new: self._seen(new), self._deleted)
        self.object: dict[str, Any] | None = None
        self.gone = asyncio.Event()
        self.reason = ""

    def reference(self) -> dict[str, Any]:
        """The Site as an Event's involved object (with its uid once seen)."""
        metadata: dict[str, Any] = {"name": self.site, "namespace": self.namespace}
        if self.object is not None:
            metadata["uid"] = (self.object.get("metadata") or {}).get("uid", "")
        return {"apiVersion": SITE.api_version, "kind": SITE.kind, "metadata": metadata}

    async def run(self) -> None:
        """Watch until cancelled; a first list without the Site means it is gone."""
        watching = asyncio.create_task(self.informer.run(), name="site-informer")
        try:
            synced = asyncio.create_task(self.informer.wait_for_sync())
            await asyncio.wait({watching, synced}, return_when=asyncio.FIRST_COMPLETED)
            synced.cancel()
            if self.informer.has_synced() and self.informer.indexer.get(self.namespace, self.site) is None:
                self._mark_gone("the Site does not exist")
            await watching
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    def not_found(self) -> None:
        """A write to the Site's status got 404."""
        self._mark_gone("the Site's status answered 404 Not Found")

    def _seen(self, obj: dict[str, Any]) -> None:
        self.object = obj

    def _deleted(self, _obj: dict[str, Any]) -> None:
        self._mark_gone("the Site was deleted")

    def _mark_gone(self, reason: str) -> None:
        if not self.gone.is_set():
            self.reason = reason
            log.warning("site gone", site=self.site, reason=reason)
            self.gone.set()
