"""The render memo: a site's agent configuration is rendered again only when what it is made of changed.

A namespace-wide policy is in every site's configuration, so rendering all of them on every reconcile (a
resync, a path's status report) cost O(sites x policies) for nothing. The memo keeps, per site, what the
configuration was last rendered from and the digest it had, not the text: the cached ConfigMap holds
that (a copy per site would be 100 MB at 1,000 sites). Each policy is rendered once per spec for every
site that enforces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from patronus.api import Path, Policy
from patronus.api.agentconfig import PolicyConfig
from patronus.kube.resource import ObjectKey
from patronus.operator.reconcile.parsed import parsed
from patronus.runtime.cache import Object
from patronus.topology import (
    SiteView,
    config_json,
    config_text_digest,
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
        self._policy_fragments: dict[str, tuple[int | None, PolicyConfig]] = {}  # by uid: (generation, it)

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
        config = render_agent_config(
            local,
            key.namespace,
            peers,
            [path for p in paths if (path := parsed(Path, p)) is not None],
            [policy for p in policies if (policy := parsed(Policy, p)) is not None],
            policy_renderer=self.policy_fragment,
        )
        text = config_json(config)
        rendered = RenderedConfig(text, config_text_digest(text))
        self._rendered[key] = _Memo(inputs, rendered.digest)
        return rendered

    def policy_fragment(self, policy: Policy) -> PolicyConfig:
        """A policy's part of an agent configuration, rendered once per spec for every site using it."""
        meta = policy.metadata
        if not meta.uid:
            return render_policy(policy)
        held = self._policy_fragments.get(meta.uid)
        if held is None or held[0] != meta.generation:
            if len(self._policy_fragments) >= FRAGMENTS_PRUNE_AT:
                live = self._live_policy_uids()
                self._policy_fragments = {u: f for u, f in self._policy_fragments.items() if u in live}
            held = (meta.generation, render_policy(policy))
            self._policy_fragments[meta.uid] = held
        return held[1]

    @property
    def policy_fragments(self) -> int:
        """How many policy renderings are held."""
        return len(self._policy_fragments)
