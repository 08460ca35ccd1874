"""The render memo: a site's agent configuration is rendered again only when what it is made of changed.

A namespace-wide policy is in every site's configuration, so rendering all of them on every reconcile (a
resync, a path's status report) cost O(sites x policies) for nothing. The memo keeps, per site, what the
configuration was last rendered from and the digest it had, not the text: the cached ConfigMap holds
that (a copy per site would be 100 MB at 1,000 sites). Each policy is rendered once per spec for every
site that enforces it, and its JSON text once too: a configuration's text is the rest of it with the
texts of its policies spliced in, which is what ``AgentConfig.to_json`` gives (tested), at a fraction of
serialising 250 policies again for each of 5,000 sites.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from patronus.api import Path, Policy
from patronus.api.agentconfig import MAX_POLICIES, PolicyConfig
from patronus.kube.resource import ObjectKey
from patronus.operator.reconcile.parsed import parsed
from patronus.runtime.cache import Object
from patronus.topology import (
    SiteView,
    WireGuardPeer,
    config_json,
    config_text_digest,
    enforced_policies,
    peers_for,
    render_agent_config,
    render_policy,
)

# Renderings of deleted policies are dropped once this many are held (a prune costs one cache walk).
FRAGMENTS_PRUNE_AT = 20_000


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """A site's rendered agent configuration: its JSON text and that text's SHA-256."""

    json: str
    digest: str


# How a configuration with no policies ends: the policies' texts go between the brackets.
_NO_POLICIES = '"policies":[]}'


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A policy's part of every configuration that holds it, for one generation of its spec."""

    generation: int | None
    policy: Policy
    config: PolicyConfig
    text: str  # ``config`` as it appears in a configuration's JSON text


@dataclass(frozen=True, slots=True)
class _Memo:
    inputs: tuple[Any, ...]
    digest: str


def spec_versions(objects: Sequence[Object]) -> tuple[tuple[str, int], ...]:
    """(uid, generation) of each object: what identifies the specs a rendering read."""
    return tuple((o["metadata"].get("uid", ""), o["metadata"].get("generation", 0)) for o in objects)


class ConfigRenderer:
    """Renders sites' agent configurations, remembering enough to skip renderings that cannot differ."""

    def __init__(self, live_policy_uids: Callable[[], set[str]]) -> None:
        """``live_policy_uids`` lists the policies that still exist (to prune renderings of the others)."""
        self._live_policy_uids = live_policy_uids
        self._rendered: dict[ObjectKey, _Memo] = {}
        self._policy_fragments: dict[str, _Fragment] = {}  # by uid

    def forget(self, key: ObjectKey) -> None:
        self._rendered.pop(key, None)

    def render(
        self,
        key: ObjectKey,
        local: SiteView,
        peer_views: Sequence[SiteView],
        paths: Sequence[Object],
        policies: Sequence[Object],
        *,
        stored: str | None = None,
    ) -> RenderedConfig:
        """The configuration of site ``key``. ``stored`` is the text its ConfigMap holds now: reused when
        the inputs are the same and its digest is the one rendered from them."""
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
        fragments = [f for p in policies if (f := self._fragment(p)) is not None]
        text = _config_text(
            local,
            key.namespace,
            peers,
            [path for p in paths if (path := parsed(Path, p)) is not None],
            fragments,
        )
        rendered = RenderedConfig(text, config_text_digest(text))
        self._rendered[key] = _Memo(inputs, rendered.digest)
        return rendered

    def _fragment(self, obj: Object) -> _Fragment | None:
        """A policy's rendering, once per spec for every site using it; None for an invalid policy."""
        meta = obj.get("metadata") or {}
        uid, generation = meta.get("uid"), meta.get("generation")
        held = self._policy_fragments.get(str(uid)) if uid else None
        if held is not None and held.generation == generation:
            return held
        policy = parsed(Policy, obj)
        if policy is None:
            return None
        config = render_policy(policy)
        fragment = _Fragment(generation, policy, config, config.model_dump_json(by_alias=True))
        if uid:
            if len(self._policy_fragments) >= FRAGMENTS_PRUNE_AT:
                live = self._live_policy_uids()
                self._policy_fragments = {u: f for u, f in self._policy_fragments.items() if u in live}
            self._policy_fragments[str(uid)] = fragment
        return fragment

    @property
    def policy_fragments(self) -> int:
        """How many policy renderings are held."""
        return len(self._policy_fragments)


def _config_text(
    local: SiteView,
    namespace: str,
    peers: Mapping[str, Sequence[WireGuardPeer]],
    paths: Sequence[Path],
    fragments: Sequence[_Fragment],
) -> str:
    """``config_json(render_agent_config(...))``, with the policies' texts spliced into the text of the
    configuration without them (a configuration with too many is refused as before)."""
    by_policy = {id(f.policy): f for f in fragments}
    own = [by_policy[id(p)] for p in enforced_policies((f.policy for f in fragments), local.name)]

    def text_of(policies: list[Policy]) -> str:
        config = render_agent_config(
            local, namespace, peers, paths, policies, policy_renderer=lambda p: by_policy[id(p)].config
        )
        return config_json(config)

    rest = text_of([]) if own and len(own) <= MAX_POLICIES else ""
    if not rest.endswith(_NO_POLICIES):
        return text_of([f.policy for f in fragments])
    return rest[: -len("[]}")] + "[" + ",".join(f.text for f in own) + "]}"
