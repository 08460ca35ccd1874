"""Site controller: keys, overlay address, the agent's rendered configuration, its workload, and status.

Three kinds of site, by what ``spec.wireguard`` gives:
- no publicKey: the operator generates an X25519 key pair and keeps it in a Secret it owns;
- publicKey + privateKeySecretRef: the key comes from the user's Secret (a mismatch is a condition);
- publicKey alone: the site is external; its agent runs elsewhere and fetches its configuration.
The private key is read and written only as Secret data; it is never logged, put in an Event, a
ConfigMap or a status, and never in an exception message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from patronus.api import Mesh, Path, Policy, Site
from patronus.api.agentconfig import PolicyConfig
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    PERSISTENT_VOLUME_CLAIM,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    SITE,
    ObjectKey,
    ResourceKind,
)
from patronus.kube.timestamps import parse_time
from patronus.operator import children
from patronus.operator.apply import apply_if_changed, apply_status_if_changed
from patronus.operator.conditions import Cond, merge
from patronus.operator.controllers.context import Context
from patronus.operator.indexes import (
    ALL_SITES,
    BY_ENFORCING_SITE,
    BY_MESH_SITE,
    BY_OVERLAY_ADDRESS,
    BY_PEER,
    BY_SOURCE,
    ref,
)
from patronus.operator.parsed import parsed, parsed_or_error
from patronus.runtime.controller import Result
from patronus.runtime.logs import get_logger
from patronus.runtime.sources import KindCache
from patronus.topology import (
    DEFAULT_OVERLAY_POOL,
    AddressPoolExhausted,
    SiteView,
    config_json,
    config_text_digest,
    mean_health,
    peer_names,
    peers_for,
    probe_overlay_address,
    render_agent_config,
    render_policy,
    site_view,
)
from patronus.wireguard.keys import generate_private_key, keys_match, public_key_for

log = get_logger(__name__)

# The agent writes status.lastHeartbeatTime this often; three missed beats and the site is not Active.
AGENT_HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_STALE_AFTER = 3 * AGENT_HEARTBEAT_INTERVAL
# Children that refer to others: applied once the first wave stored those. The Deployment mounts the
# Secret and ConfigMap and runs as the ServiceAccount; a RoleBinding to a Role that does not exist yet
# fails the API server's escalation check (404) unless the operator may "bind", which it may not.
SECOND_WAVE = frozenset({"Deployment", "RoleBinding"})
# Renderings of deleted policies are dropped once this many are held (a prune costs one cache walk).
FRAGMENTS_PRUNE_AT = 20_000


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """A site's rendered agent configuration: its JSON text and that text's SHA-256."""

    json: str
    digest: str  # the Deployment carries it, so a new configuration rolls the agent


@dataclass(frozen=True, slots=True)
class RenderMemo:
    """What a site's configuration was last rendered from, and the digest it had. The text itself is
    not kept here: the cached ConfigMap holds it (a copy per site would be 100 MB at 1,000 sites)."""

    inputs: tuple[Any, ...]
    digest: str


def spec_versions(objects: list[dict[str, Any]]) -> tuple[tuple[str, int], ...]:
    """(uid, generation) of each object: what identifies the specs a rendering read."""
    return tuple((o["metadata"].get("uid", ""), o["metadata"].get("generation", 0)) for o in objects)


async def _as_false(work: Coroutine[Any, Any, None]) -> bool:
    await work
    return False


class KeyProblem(Exception):
    """The site's key material is missing or inconsistent; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode(data: dict[str, str], key: str) -> str | None:
    try:
        return base64.b64decode(data[key]).decode().strip()
    except (KeyError, binascii.Error, UnicodeDecodeError):
        return None


def _key_pair(secret: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The (private, public) pair in one of our key Secrets, or (None, None) if absent or inconsistent."""
    data = (secret or {}).get("data") or {}
    private, public = _decode(data, "privateKey"), _decode(data, "publicKey")
    try:
        if private is not None and public is not None and keys_match(private, public):
            return private, public
    except ValueError:
        pass
    return None, None


def phase_for(*, key_problem: bool, heartbeat_age: float | None, paths: list[dict[str, Any]]) -> str:
    """Failed: it cannot work as specified; Pending: its agent never reported; Degraded: the agent went
    quiet or some of its paths are not up; Active: the agent reports and every path is up."""
    if key_problem:
        return "Failed"
    if heartbeat_age is None:
        return "Pending"
    if heartbeat_age > HEARTBEAT_STALE_AFTER:
        return "Degraded"
    if any((p.get("status") or {}).get("state") != "up" for p in paths):
        return "Degraded"
    return "Active"


def site_status(
    status: dict[str, Any],
    *,
    generation: int | None,
    now: datetime,
    heartbeat_age: float | None,
    key_cond: Cond,
    address_cond: Cond,
    paths: list[dict[str, Any]],
    peer_views: list[SiteView],
    public_key: str | None,
    address: str | None,
) -> dict[str, Any]:
    """The status a Site should have: phase, conditions, peers, paths, health. Pure."""
    key_problem = key_cond.status != "True" or address_cond.status != "True"
    phase = phase_for(key_problem=key_problem, heartbeat_age=heartbeat_age, paths=paths)
    up = [p for p in paths if (p.get("status") or {}).get("state") == "up"]
    health = mean_health(((p.get("status") or {}).get("health") or {}).get("healthScore") for p in up)
    agent_cond = (
        Cond("AgentReporting", "False", "NeverReported", "the site's agent has not reported yet")
        if heartbeat_age is None
        else Cond(
            "AgentReporting",
            "False",
            "HeartbeatStale",
            f"no heartbeat for more than {HEARTBEAT_STALE_AFTER:.0f}s",
        )
        if heartbeat_age > HEARTBEAT_STALE_AFTER
        else Cond("AgentReporting", "True", "HeartbeatFresh")
    )
    ready = (
        Cond("Ready", "True", "Active")
        if phase == "Active"
        else Cond(
            "Ready",
            "False",
            key_cond.reason
            if key_cond.status != "True"
            else address_cond.reason
            if address_cond.status != "True"
            else agent_cond.reason
            if agent_cond.status != "True"
            else "PathsNotUp",
            f"site is {phase}",
        )
    )
    desired_status: dict[str, Any] = {
        "phase": phase,
        "peers": sum(1 for view in peer_views if view.public_key and view.overlay_address),
        "activePaths": len(up),
        "observedGeneration": generation,
        "conditions": merge(
            status.get("conditions"),
            [key_cond, address_cond, agent_cond, ready],
            now=now,
            generation=generation,
        ),
    }
    if public_key:
        desired_status["publicKey"] = public_key
    if address:
        desired_status["overlayAddress"] = address
    if health is not None:
        desired_status["healthScore"] = round(health, 1)
    return desired_status


class SiteReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Overlay addresses handed out by this process but maybe not yet in the cache, per namespace;
        # the lock makes allocation in one namespace sequential, so two new sites never share one.
        self._reserved: dict[str, dict[str, str]] = defaultdict(dict)
        self._reserved_by_address: dict[str, dict[str, str]] = defaultdict(dict)  # the same, inverted
        self._address_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._rendered: dict[ObjectKey, RenderMemo] = {}
        self._children_current: dict[ObjectKey, tuple[Any, ...]] = {}
        # By policy uid: (generation, rendering); pruned to the cached policies when it outgrows them.
        self._policy_fragments: dict[str, tuple[int | None, PolicyConfig]] = {}

    async def reconcile(self, key: ObjectKey) -> Result | None:
        caches = self.ctx.caches
        obj = caches.sites.get(key.namespace, key.name)
        if obj is None:
            self._release(key.namespace, key.name)
            self._rendered.pop(key, None)
            self._children_current.pop(key, None)
            return None  # children go with the owner reference; peers are requeued by the mapper
        status = obj.get("status") or {}
        generation = obj["metadata"].get("generation")
        now = self.ctx.now()
        site = parsed_or_error(Site, obj)
        if isinstance(site, ValidationError):
            await self._write_status(
                obj,
                {
                    "phase": "Failed",
                    "observedGeneration": generation,
                    "conditions": merge(
                        status.get("conditions"),
                        [Cond("Ready", "False", "InvalidSpec", str(site.errors()[0]["msg"]))],
                        now=now,
                        generation=generation,
                    ),
                },
            )
            return None

        key_cond, public_key, secret_name, generated = await self._keys(obj, site)
        address, address_cond = await self._overlay_address(key.namespace, key.name, status)

        peers = self._peer_sites(key.namespace, key.name, site)
        local = site_view(site, public_key=public_key, overlay_address=address)
        peer_views = [
            site_view(
                peer,
                public_key=(peer_obj.get("status") or {}).get("publicKey"),
                overlay_address=(peer_obj.get("status") or {}).get("overlayAddress"),
            )
            for peer_obj, peer in peers
        ]
        paths = caches.paths.by_index(BY_SOURCE, ref(key.namespace, key.name))
        policies = self._policies(key.namespace, key.name)
        config_map = caches.config_maps.get(key.namespace, children.child_names(key.name).config_map)
        stored = ((config_map or {}).get("data") or {}).get(children.CONFIG_KEY)
        rendered = self._render(key, local, peer_views, paths, policies, stored=stored)

        heartbeat = parse_time(status.get("lastHeartbeatTime"))
        heartbeat_age = (now - heartbeat).total_seconds() if heartbeat else None
        desired_status = site_status(
            status,
            generation=generation,
            now=now,
            heartbeat_age=heartbeat_age,
            key_cond=key_cond,
            address_cond=address_cond,
            paths=paths,
            peer_views=peer_views,
            public_key=public_key,
            address=address,
        )
        await self._reconcile_children(
            key,
            obj,
            site,
            secret_name=secret_name,
            generated=generated,
            rendered=rendered,
            paths=paths,
            policies=policies,
            status=desired_status,
        )
        phase = desired_status["phase"]
        self._emit_phase_change(obj, status.get("phase"), phase)
        if heartbeat_age is not None and heartbeat_age <= HEARTBEAT_STALE_AFTER:
            return Result(requeue_after=HEARTBEAT_STALE_AFTER - heartbeat_age + 0.5)
        return None

    # -- keys -------------------------------------------------------------------------------------

    async def _keys(
        self, obj: dict[str, Any], site: Site
    ) -> tuple[Cond, str | None, str | None, tuple[str, str] | None]:
        """(KeysReady condition, public key, name of the Secret with the private key, generated pair)."""
        wireguard = site.spec.wireguard
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if wireguard.public_key is None:
            secret_name = children.child_names(name).secret
            private, public = _key_pair(self.ctx.caches.secrets.get(namespace, secret_name))
            if private is None:
                # The cache may lag our own write; never replace a key that exists because of it.
                with contextlib.suppress(NotFoundError):
                    private, public = _key_pair(await self.ctx.client.get(SECRET, namespace, secret_name))
            if private is None or public is None:
                private = generate_private_key()
                public = public_key_for(private)
                log.info("generated a WireGuard key pair", site=name, public_key=public)
            return Cond("KeysReady", "True", "KeyGenerated"), public, secret_name, (private, public)
        if wireguard.private_key_secret_ref is None:
            return (
                Cond(
                    "KeysReady",
                    "True",
                    "ExternalSite",
                    "the site's agent runs outside the cluster and holds its own private key",
                ),
                wireguard.public_key,
                None,
                None,
            )
        secret_ref = wireguard.private_key_secret_ref
        try:
            secret = await self.ctx.client.get(SECRET, namespace, secret_ref.name)
        except NotFoundError:
            return (
                Cond(
                    "KeysReady",
                    "False",
                    "SecretNotFound",
                    f"wireguard.privateKeySecretRef: Secret {secret_ref.name} not found",
                ),
                wireguard.public_key,
                secret_ref.name,
                None,
            )
        private = _decode(secret.get("data") or {}, secret_ref.key)
        if private is None:
            return (
                Cond(
                    "KeysReady",
                    "False",
                    "SecretKeyMissing",
                    f"Secret {secret_ref.name} has no key {secret_ref.key}",
                ),
                wireguard.public_key,
                secret_ref.name,
                None,
            )
        try:
            matches = keys_match(private, wireguard.public_key)
        except ValueError:
            matches = False
        if not matches:
            return (
                Cond(
                    "KeysReady",
                    "False",
                    "KeyMismatch",
                    f"the private key in Secret {secret_ref.name} does not belong to wireguard.publicKey",
                ),
                wireguard.public_key,
                secret_ref.name,
                None,
            )
        return Cond("KeysReady", "True", "KeyFromSecret"), wireguard.public_key, secret_ref.name, None

    # -- overlay address --------------------------------------------------------------------------

    async def _overlay_address(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> tuple[str | None, Cond]:
        current = status.get("overlayAddress")
        if current:
            if self._reserved[namespace].get(name) != current:
                self._reserve(namespace, name, current)
            return current, Cond("AddressAssigned", "True", "Assigned")
        async with self._address_locks[namespace]:
            reserved = self._reserved[namespace]
            if name in reserved:
                return reserved[name], Cond("AddressAssigned", "True", "Assigned")
            holders = self._reserved_by_address[namespace]

            def is_taken(candidate: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
                # An index lookup per candidate: listing every site's address made each new site O(N).
                address = str(candidate)
                if holders.get(address, name) != name:
                    return True
                found = self.ctx.caches.sites.by_index(BY_OVERLAY_ADDRESS, ref(namespace, address))
                return any(other["metadata"]["name"] != name for other in found)

            try:
                address = str(probe_overlay_address(name, DEFAULT_OVERLAY_POOL, is_taken))
            except AddressPoolExhausted as error:
                return None, Cond("AddressAssigned", "False", "PoolExhausted", str(error))
            self._reserve(namespace, name, address)
            return address, Cond("AddressAssigned", "True", "Assigned")

    def _reserve(self, namespace: str, name: str, address: str) -> None:
        self._release(namespace, name)
        self._reserved[namespace][name] = address
        self._reserved_by_address[namespace][address] = name

    def _release(self, namespace: str, name: str) -> None:
        address = self._reserved[namespace].pop(name, None)
        if address is not None and self._reserved_by_address[namespace].get(address) == name:
            del self._reserved_by_address[namespace][address]

    # -- the world around the site ----------------------------------------------------------------

    def _peer_sites(self, namespace: str, name: str, site: Site) -> list[tuple[dict[str, Any], Site]]:
        # Only the meshes that list this site and the sites whose peerWith names it (both indexed):
        # looking at every object in the namespace made each reconcile O(namespace).
        me = ref(namespace, name)
        meshes = [
            m for m in (parsed(Mesh, obj) for obj in self.ctx.caches.meshes.by_index(BY_MESH_SITE, me)) if m
        ]
        others = [s for s in (parsed(Site, obj) for obj in self.ctx.caches.sites.by_index(BY_PEER, me)) if s]
        found = []
        # sites= also counts a peer's own peerWith naming this site, so both ends of a tunnel exist.
        for peer_name in peer_names(site, meshes, sites=others):
            peer_obj = self.ctx.caches.sites.get(namespace, peer_name)
            peer = parsed(Site, peer_obj)
            if peer_obj is not None and peer is not None:
                found.append((peer_obj, peer))
        return found

    def _render(
        self,
        key: ObjectKey,
        local: SiteView,
        peer_views: list[SiteView],
        paths: list[dict[str, Any]],
        policies: list[dict[str, Any]],
        *,
        stored: str | None = None,
    ) -> RenderedConfig:
        """The site's agent configuration, rendered again only when something it is made of changed.

        A namespace-wide policy is in every site's configuration, so re-rendering all of them on every
        reconcile (a resync, a path's status report) cost O(sites x policies) for nothing. ``stored`` is
        the text the site's ConfigMap holds now: reused when the inputs are the same and its digest is
        the one rendered from them.
        """
        peers = {u.name: tuple(peers_for(local, peer_views, u.name)) for u in local.underlays}
        inputs = (local, key.namespace, tuple(peers.items()), spec_versions(paths), spec_versions(policies))
        memo = self._rendered.get(key)
        if (
            memo is not None
            and memo.inputs == inputs
            and stored is not None
            and config_text_digest(stored) == memo.digest
        ):
            return RenderedConfig(stored, memo.digest)
        config = render_agent_config(
            local,
            key.namespace,
            peers,
            [path for p in paths if (path := parsed(Path, p)) is not None],
            [policy for p in policies if (policy := parsed(Policy, p)) is not None],
            policy_renderer=self._policy_fragment,
        )
        text = config_json(config)
        rendered = RenderedConfig(text, config_text_digest(text))
        self._rendered[key] = RenderMemo(inputs, rendered.digest)
        return rendered

    def _policy_fragment(self, policy: Policy) -> PolicyConfig:
        """A policy's part of an agent configuration, rendered once per spec for every site using it."""
        meta = policy.metadata
        if not meta.uid:
            return render_policy(policy)
        held = self._policy_fragments.get(meta.uid)
        if held is None or held[0] != meta.generation:
            if len(self._policy_fragments) >= FRAGMENTS_PRUNE_AT:
                live = {p["metadata"].get("uid") for p in self.ctx.caches.policies.list()}
                self._policy_fragments = {u: f for u, f in self._policy_fragments.items() if u in live}
            held = (meta.generation, render_policy(policy))
            self._policy_fragments[meta.uid] = held
        return held[1]

    def _policies(self, namespace: str, name: str) -> list[dict[str, Any]]:
        policies = self.ctx.caches.policies
        mine = policies.by_index(BY_ENFORCING_SITE, ref(namespace, name))
        everyone = policies.by_index(BY_ENFORCING_SITE, ref(namespace, ALL_SITES))
        return sorted(mine + everyone, key=lambda p: p["metadata"]["name"])

    async def _reconcile_children(
        self,
        key: ObjectKey,
        obj: dict[str, Any],
        site: Site,
        *,
        secret_name: str | None,
        generated: tuple[str, str] | None,
        rendered: RenderedConfig,
        paths: list[dict[str, Any]],
        policies: list[dict[str, Any]],
        status: dict[str, Any],
    ) -> None:
        """Bring the site's children up to date, and write ``status`` alongside the last of them."""
        generation = obj["metadata"].get("generation")
        external = (
            site.spec.wireguard.public_key is not None and site.spec.wireguard.private_key_secret_ref is None
        )
        path_names = tuple(sorted(p["metadata"]["name"] for p in paths))
        policy_names = tuple(p["metadata"]["name"] for p in policies)
        # What the children are made of, and the versions the cache holds: when neither moved since a
        # pass that found every child current, there is nothing to build or compare.
        children_inputs = (
            obj["metadata"].get("uid"),
            generation,
            secret_name,
            generated[1] if generated else None,  # the public half: the pair is fixed by it
            rendered.digest,
            path_names,
            policy_names,
            self._children_versions(key),
        )
        if self._children_current.get(key) == children_inputs:
            await self._write_status(obj, status)
        else:
            desired = children.desired_children(
                obj,
                site,
                self.ctx.config,
                external=external,
                secret_name=secret_name,
                generated_key=generated,
                config_json=rendered.json,
                config_digest=rendered.digest,
                path_names=path_names,
                policy_names=policy_names,
            )
            wrote = await self._apply_children(
                key.namespace, desired, alongside_last=self._write_status(obj, status)
            )
            if not wrote:
                self._children_current[key] = children_inputs

    async def _apply_children(
        self, namespace: str, desired: list[dict[str, Any]], *, alongside_last: Coroutine[Any, Any, None]
    ) -> bool:
        """Apply what changed, concurrently, in two waves (see ``SECOND_WAVE``), ``alongside_last`` with
        the second; True when something was written.

        One after the other, a site's seven writes and its status made its reconcile eight API round
        trips long; now it is two. The status waits for the first wave: it publishes the public key,
        which must not happen before the key's Secret is stored.
        """

        async def apply(manifest: dict[str, Any]) -> bool:
            kind, cache = self._child_kind(manifest["kind"])
            cached = cache.get(namespace, manifest["metadata"]["name"])
            return (
                await apply_if_changed(self.ctx.client, kind, manifest, cached, self.ctx.applied) is not None
            )

        first = [apply(m) for m in desired if m["kind"] not in SECOND_WAVE]
        last = [apply(m) for m in desired if m["kind"] in SECOND_WAVE] + [_as_false(alongside_last)]
        wrote = False
        try:
            for wave in (first, last):
                for result in await asyncio.gather(*wave, return_exceptions=True):
                    if isinstance(result, BaseException):
                        raise result
                    wrote = wrote or result
        finally:
            for pending in (*first, *last, alongside_last):
                pending.close()  # not started when an earlier wave failed; a no-op once finished
        return wrote

    def _children_versions(self, key: ObjectKey) -> tuple[tuple[str, str] | None, ...]:
        """(uid, resourceVersion) of each child the cache holds for the site, None where it has none."""
        versions: list[tuple[str, str] | None] = []
        for kind, name in children.child_names(key.name).by_kind().items():
            cached = self._child_kind(kind)[1].get(key.namespace, name)
            meta = (cached or {}).get("metadata") or {}
            versions.append((meta.get("uid", ""), meta.get("resourceVersion", "")) if cached else None)
        return tuple(versions)

    def _child_kind(self, kind: str) -> tuple[ResourceKind, KindCache]:
        caches = self.ctx.caches
        table = {
            "Secret": (SECRET, caches.secrets),
            "ConfigMap": (CONFIG_MAP, caches.config_maps),
            "ServiceAccount": (SERVICE_ACCOUNT, caches.service_accounts),
            "Role": (ROLE, caches.roles),
            "RoleBinding": (ROLE_BINDING, caches.role_bindings),
            "Deployment": (DEPLOYMENT, caches.deployments),
            "PersistentVolumeClaim": (PERSISTENT_VOLUME_CLAIM, caches.pvcs),
            "Service": (SERVICE, caches.services),
        }
        return table[kind]

    async def _write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        await apply_status_if_changed(self.ctx.client, SITE, obj, status, optional=("healthScore",))

    def _emit_phase_change(self, obj: dict[str, Any], before: str | None, after: str) -> None:
        if before == after:
            return
        if after == "Active":
            self.ctx.events.event(
                obj, "Normal", "SiteActive", "the site's agent reports and its paths are up"
            )
        elif after == "Failed":
            self.ctx.events.event(
                obj, "Warning", "SiteFailed", "the site cannot work as specified; see conditions"
            )
        elif after == "Degraded" and before == "Active":
            self.ctx.events.event(
                obj, "Warning", "SiteDegraded", "agent quiet or paths not up; see conditions"
            )
