"""Path controller: checks both sites exist, and never lets a Path whose agent went quiet look up.

The computing is in ``status`` (pure); this module reads the cache, writes the status and records the
state changes as Events.
"""

from __future__ import annotations

from patronus.api import Path
from patronus.api.parsers import parse_duration
from patronus.kube.resource import PATH, ObjectKey
from patronus.operator.context import Context
from patronus.operator.path.status import agent_quiet, effective_state, freshness, path_status, state_event
from patronus.operator.reconcile.apply import apply_status_if_changed
from patronus.operator.reconcile.opening import Opening
from patronus.runtime.controller import Result


class PathReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last_state: dict[ObjectKey, str] = {}
        self.opening = Opening(ctx, PATH, ctx.caches.paths, Path, forget=self._forget)

    async def reconcile(self, key: ObjectKey) -> Result | None:
        opened = await self.opening.open(key)
        if opened is None:
            return None
        spec = opened.model.spec
        missing = [
            site
            for site in (spec.source.site_ref, spec.destination.site_ref)
            if self.ctx.caches.sites.get(key.namespace, site) is None
        ]
        source = self.ctx.caches.sites.get(key.namespace, spec.source.site_ref)
        interval = parse_duration(spec.monitoring.interval)
        report = freshness(opened.status, interval, opened.now, agent_quiet=agent_quiet(source))
        status = path_status(opened.status, missing, report, now=opened.now, generation=opened.generation)
        await apply_status_if_changed(self.ctx.client, PATH, opened.obj, status)
        state = effective_state(opened.status, report)
        event = state_event(self._last_state.get(key), state)
        self._last_state[key] = state
        if event is not None:
            self.ctx.events.event(opened.obj, *event)
        if report.fresh and report.age is not None and spec.monitoring.enabled:
            return Result(requeue_after=max(report.stale_after - report.age, 0.0) + 0.5)
        return None

    def _forget(self, key: ObjectKey) -> None:
        self._last_state.pop(key, None)
