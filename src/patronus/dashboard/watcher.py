"""The dashboard's live picture of one namespace: informers over the API, and the browsers it feeds.

Sites, Paths, Policies and Events come from the project's informers (list + watch, relist on 410), so
the dashboard sees what the API server holds with no polling. Changes are not sent one by one: they are
gathered and flushed every ``flush_interval`` as one *delta* (the latest view of each changed object),
so a mesh of thousands of Paths reporting every few seconds costs each browser a few messages a second,
and a path that reported three times in that interval is sent once.

Each subscriber (one Server-Sent Events stream) has a bounded queue; a browser too slow to drain it is
dropped rather than let memory grow, and its EventSource reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patronus.dashboard.history import FailoverTimeline, PathHistory, Switch
from patronus.dashboard.views import (
    enforcing_site,
    event_sort_key,
    event_view,
    path_view,
    policy_view,
    site_report,
    site_view,
)
from patronus.kube.client import KubeClient
from patronus.kube.resource import EVENT, PATH, POLICY, SITE, ResourceKind
from patronus.runtime.cache import Object
from patronus.runtime.informer import Informer, OnAdd, OnDelete, OnUpdate
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

KINDS: dict[str, ResourceKind] = {"sites": SITE, "paths": PATH, "policies": POLICY, "events": EVENT}
RECENT_EVENTS = 100
QUEUE_SIZE = 64
_OUR_GROUP = SITE.group


def _ours(event: Object) -> bool:
    """Events about our kinds (a namespace also holds Pods', Deployments' ...)."""
    api_version = str((event.get("involvedObject") or {}).get("apiVersion") or "")
    return api_version.startswith(_OUR_GROUP + "/")


@dataclass(eq=False)  # by identity: a set of subscribers
class Subscriber:
    """One browser's stream: messages to send, and whether it fell behind and must start over."""

    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


@dataclass
class _Pending:
    changed: dict[str, dict[str, Object]] = field(default_factory=lambda: {k: {} for k in KINDS})
    deleted: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in KINDS})
    switches: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.changed.values()) or any(self.deleted.values()) or bool(self.switches)


class Watcher:
    """Informers for one namespace, the bounded history they feed, and the subscribers they update."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        flush_interval: float = 0.25,
        history: PathHistory | None = None,
        timeline: FailoverTimeline | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace
        self.flush_interval = flush_interval
        self.history = history or PathHistory()
        self.timeline = timeline or FailoverTimeline()
        self.wall_clock = wall_clock
        self.informers = {key: Informer(client, kind, namespace) for key, kind in KINDS.items()}
        self.subscribers: set[Subscriber] = set()
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._views: dict[str, Callable[[Object], Any]] = {
            "sites": site_view,
            "paths": path_view,
            "policies": self._policy_view,
            "events": event_view,
        }
        for key, informer in self.informers.items():
            informer.add_handler(*self._handlers(key))

    # -- reading ----------------------------------------------------------------------------------

    def synced(self) -> bool:
        return all(informer.has_synced() for informer in self.informers.values())

    def objects(self, key: str) -> list[Object]:
        objects = self.informers[key].indexer.list(self.namespace)
        return [o for o in objects if _ours(o)] if key == "events" else objects

    def get(self, key: str, name: str) -> Object | None:
        return self.informers[key].indexer.get(self.namespace, name)

    def views(self, key: str) -> list[Any]:
        views = [self._views[key](obj) for obj in self.objects(key)]
        if key == "events":
            views.sort(key=event_sort_key, reverse=True)
            return views[:RECENT_EVENTS]
        return sorted(views, key=lambda v: str(v["name"]))

    def _policy_view(self, obj: Object) -> Any:
        site = enforcing_site(obj)
        report = site_report(self.get("sites", site), str(obj["metadata"]["name"])) if site else None
        return policy_view(obj, report)

    def snapshot(self) -> dict[str, Any]:
        return {"namespace": self.namespace, **{key: self.views(key) for key in KINDS}}

    def switches(self, policy: str) -> list[Switch]:
        return self.timeline.switches(policy)

    # -- subscribers ------------------------------------------------------------------------------

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber()
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the informers and the flusher until cancelled."""
        async with asyncio.TaskGroup() as group:
            for key, informer in self.informers.items():
                group.create_task(informer.run(), name=f"dashboard-informer-{key}")
            group.create_task(self._flush_loop(), name="dashboard-flush")

    def stop(self) -> None:
        for informer in self.informers.values():
            informer.stop()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> dict[str, Any] | None:
        """Send what changed since the last flush to every subscriber; returns the message sent."""
        pending, self._pending = self._pending, _Pending()
        if not pending:
            return None
        message: dict[str, Any] = {
            "type": "delta",
            **{
                key: [self._views[key](obj) for obj in objs.values()] for key, objs in pending.changed.items()
            },
            "deleted": {key: sorted(names) for key, names in pending.deleted.items()},
            "switches": pending.switches,
        }
        for subscriber in list(self.subscribers):
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.overflowed = True
                self.subscribers.discard(subscriber)
                with contextlib.suppress(asyncio.QueueFull):
                    subscriber.queue.put_nowait({"type": "overflow"})
        return message

    # -- informer handlers (synchronous, quick) ---------------------------------------------------

    def _handlers(self, key: str) -> tuple[OnAdd, OnUpdate, OnDelete]:
        def added(obj: Object) -> None:
            self._changed(key, obj)

        def updated(_old: Object, new: Object) -> None:
            self._changed(key, new)

        def deleted(obj: Object) -> None:
            self._deleted(key, obj)

        return added, updated, deleted

    def _changed(self, key: str, obj: Object) -> None:
        if key == "events" and not _ours(obj):
            return
        name = str(obj["metadata"]["name"])
        if key == "paths":
            self.history.record(path_view(obj))
        elif key == "policies":
            self._observe_policy(obj)
        elif key == "sites":
            for report in (obj.get("status") or {}).get("policies") or ():
                policy = self.get("policies", str(report.get("name")))
                if policy is not None and enforcing_site(policy) == name:
                    self._observe_policy(policy)
        self._pending.changed[key][name] = obj
        self._pending.deleted[key].discard(name)
        self._wake.set()

    def _observe_policy(self, obj: Object) -> None:
        """Note the path in use (a change is a switch on the timeline) and send the policy's new view."""
        name = str(obj["metadata"]["name"])
        switch = self.timeline.observe(self._policy_view(obj), self.wall_clock())
        if switch is not None:
            self._pending.switches.append({"policy": name, **switch})
        self._pending.changed["policies"][name] = obj

    def _deleted(self, key: str, obj: Object) -> None:
        name = str(obj["metadata"]["name"])
        if key == "paths":
            self.history.forget(name)
        elif key == "policies":
            self.timeline.forget(name)
        self._pending.changed[key].pop(name, None)
        self._pending.deleted[key].add(name)
        self._wake.set()
