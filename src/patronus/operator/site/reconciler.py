"""Site controller: keys, overlay address, the agent's rendered configuration, its workload, and status.

A reconcile reads top-down: open the Site (shared with the other kinds), resolve its key material
(``keys``), its overlay address (``addresses``), its peers as the operator trusts them (``peers``),
render its configuration (``render``, memoised), compute its status (``status``, pure) and apply its
children with the status beside them (``applier``). Deleting a Site garbage-collects its children; its
peers are requeued by the mappers and drop it from their configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from patronus.api import Site
from patronus.kube.errors import AlreadyExistsError
from patronus.kube.resource import CONFIG_MAP, LEASE, SECRET, SITE, ObjectKey
from patronus.operator.context import Context
from patronus.operator.indexes import ALL_SITES, BY_ENFORCING_SITE, BY_SOURCE, ref
from patronus.operator.reconcile.apply import apply_status_if_changed
from patronus.operator.reconcile.opening import Opened, Opening
from patronus.operator.site.addresses import Assignment, OverlayAddresses
from patronus.operator.site.applier import ChildrenApplier
from patronus.operator.site.children import CONFIG_KEY, child_names, desired_children
from patronus.operator.site.conflicts import duplicate_key_condition, key_rival, routes
from patronus.operator.site.keys import (
    GeneratedKeys,
    KeyMaterial,
    adopt_existing_secret,
    resolve_keys,
)
from patronus.operator.site.peers import peer_views
from patronus.operator.site.render import ConfigRenderer, RenderedConfig
from patronus.operator.site.status import (
    SiteFacts,
    last_heartbeat,
    phase_event,
    site_status,
)
from patronus.runtime.cache import Object
from patronus.runtime.controller import Result
from patronus.topology import SiteView, site_view


class SiteReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.addresses = OverlayAddresses(ctx.caches.child(CONFIG_MAP))
        self.renderer = ConfigRenderer(
            lambda: {str(p["metadata"].get("uid")) for p in ctx.caches.policies.list()}
        )
        self.applier = ChildrenApplier(ctx)
        self.generated = GeneratedKeys()
        self.opening = Opening(
            ctx, SITE, ctx.caches.sites, Site, forget=self._forget, invalid_fields={"phase": "Failed"}
        )

    async def reconcile(self, key: ObjectKey) -> Result | None:
        opened = await self.opening.open(key)
        if opened is None:
            return None
        site = opened.model
        keys = self._unless_contested(
            opened.obj, await resolve_keys(self.ctx, opened.obj, site, self.generated)
        )
        assignment = await self.addresses.assign(key.namespace, key.name)
        local = site_view(site, public_key=keys.public_key, overlay_address=assignment.address)
        peers = peer_views(self.ctx.caches, self.addresses, key.namespace, site)
        paths = self.ctx.caches.paths.by_index(BY_SOURCE, ref(key.namespace, key.name))
        policies = self._policies(key)
        rendered = self._render(key, local, peers, paths, policies)
        facts = self._facts(
            opened, keys=keys, assignment=assignment, rendered=rendered, paths=paths, peers=peers
        )
        status = site_status(opened.status, facts, now=opened.now)
        try:
            await self._apply_children(
                opened, keys=keys, assignment=assignment, rendered=rendered, paths=paths, status=status
            )
        except AlreadyExistsError:
            if not keys.fresh:
                raise
            await adopt_existing_secret(self.ctx, opened.obj, self.generated)
            return Result(requeue=True)  # with the key that Secret holds
        event = phase_event(opened.status.get("phase"), status["phase"])
        if event is not None:
            self.ctx.events.event(opened.obj, *event)
        return None  # a heartbeat going stale is found by the scan of site.heartbeats

    def _unless_contested(self, obj: Object, keys: KeyMaterial) -> KeyMaterial:
        """The key material, unless another site claimed the same public key first."""
        rival = key_rival(self.ctx.caches, obj, keys.public_key) if keys.ready else None
        return keys if rival is None else replace(keys, condition=duplicate_key_condition(rival))

    def _forget(self, key: ObjectKey) -> None:
        self.addresses.release(key.namespace, key.name)
        self.renderer.forget(key)
        self.applier.forget(key)
        self.generated.forget(key)

    def _policies(self, key: ObjectKey) -> list[Object]:
        policies = self.ctx.caches.policies
        mine = policies.by_index(BY_ENFORCING_SITE, ref(key.namespace, key.name))
        everyone = policies.by_index(BY_ENFORCING_SITE, ref(key.namespace, ALL_SITES))
        return sorted(mine + everyone, key=lambda p: p["metadata"]["name"])

    def _render(
        self,
        key: ObjectKey,
        local: SiteView,
        peers: Sequence[SiteView],
        paths: Sequence[Object],
        policies: Sequence[Object],
    ) -> RenderedConfig:
        config_map = self.ctx.caches.child(CONFIG_MAP).get(key.namespace, child_names(key.name).config_map)
        stored = ((config_map or {}).get("data") or {}).get(CONFIG_KEY)
        return self.renderer.render(key, local, peers, paths, policies, stored=stored)

    def _facts(
        self,
        opened: Opened[Site],
        *,
        keys: KeyMaterial,
        assignment: Assignment,
        rendered: RenderedConfig,
        paths: Sequence[Object],
        peers: Sequence[SiteView],
    ) -> SiteFacts:
        metadata = opened.obj["metadata"]
        names = child_names(metadata["name"])
        lease = self.ctx.caches.child(LEASE).get(metadata["namespace"], names.lease)
        heartbeat = last_heartbeat(opened.status, lease)
        return SiteFacts(
            generation=opened.generation,
            heartbeat_age=(opened.now - heartbeat).total_seconds() if heartbeat else None,
            keys=keys.condition,
            address=assignment.condition,
            routes=routes(self.ctx.caches, opened.obj, opened.model.spec.subnets or ()).condition(),
            config_digest=rendered.digest,
            agent=opened.status.get("agent") or {},
            paths=paths,
            ready_peers=sum(1 for view in peers if view.public_key and view.overlay_address),
            public_key=keys.public_key,
            overlay_address=assignment.address,
            config_map=names.config_map,
            heartbeat_lease=names.lease,
        )

    async def _apply_children(
        self,
        opened: Opened[Site],
        *,
        keys: KeyMaterial,
        assignment: Assignment,
        rendered: RenderedConfig,
        paths: Sequence[Object],
        status: dict[str, Any],
    ) -> None:
        obj, site = opened.obj, opened.model
        path_names = tuple(sorted(p["metadata"]["name"] for p in paths))
        wireguard = site.spec.wireguard
        external = wireguard.public_key is not None and wireguard.private_key_secret_ref is None
        # What the children are made of: the public half of a generated pair fixes the pair.
        inputs = (
            obj["metadata"].get("uid"),
            opened.generation,
            keys.secret_name,
            keys.generated[1] if keys.generated else None,
            rendered.digest,
            assignment.address,
            path_names,
        )

        def build() -> list[dict[str, Any]]:
            return desired_children(
                obj,
                site,
                self.ctx.config,
                external=external,
                secret_name=keys.secret_name,
                generated_key=keys.generated,
                config_json=rendered.json,
                config_digest=rendered.digest,
                path_names=path_names,
                overlay_address=assignment.address,
            )

        async def write_status() -> None:
            await apply_status_if_changed(self.ctx.client, SITE, obj, status, optional=("healthScore",))

        await self.applier.apply(
            ObjectKey.of(obj), inputs, build, write_status, create_first=SECRET.kind if keys.fresh else None
        )
        if keys.fresh:
            self.generated.stored(obj)
