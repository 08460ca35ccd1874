"""Where the agent's configuration comes from: the one ConfigMap it is told about, watched and validated.

The agent is given the ConfigMap's name (``--config-map``): it never derives it from the site's name,
because the operator shortens long or dotted names with a hash. The ``config.json`` key is parsed with
:func:`~patronus.api.agentconfig.parse_agent_config` (typed, versioned, every value checked). A text that
fails (an unknown schema version, an invalid value, no such key) is *refused*: ``on_refused`` is told
why, and the last accepted configuration stays the one the data plane runs. A deleted ConfigMap changes
nothing (the Site's deletion is what ends an agent). The same text seen twice is not reported twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from patronus.api.agentconfig import AgentConfig, parse_agent_config
from patronus.kube.client import KubeClient
from patronus.kube.resource import CONFIG_MAP
from patronus.runtime.clock import Clock
from patronus.runtime.informer import Informer
from patronus.runtime.logs import get_logger
from patronus.topology.agent_config import config_text_digest

log = get_logger(__name__)

CONFIG_KEY = "config.json"


@dataclass(frozen=True)
class Accepted:
    """A valid configuration and the digest of its text (what ``status.agent.configDigest`` shows)."""

    config: AgentConfig
    digest: str


@dataclass(frozen=True)
class Refused:
    """A configuration text that failed validation, and why."""

    digest: str | None
    error: str


def read_config(obj: dict[str, Any]) -> Accepted | Refused:
    """Parse a ConfigMap object's ``config.json``."""
    text = (obj.get("data") or {}).get(CONFIG_KEY)
    if not isinstance(text, str):
        return Refused(None, f"the ConfigMap has no {CONFIG_KEY} key")
    digest = config_text_digest(text)
    try:
        return Accepted(parse_agent_config(text), digest)
    except ValueError as error:  # UnsupportedSchemaVersion and AgentConfigError are ValueErrors
        return Refused(digest, str(error))


class ConfigSource:
    """Watches one ConfigMap; tells ``on_accepted`` / ``on_refused`` about each new text."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        *,
        clock: Clock,
        on_accepted: Callable[[Accepted], None],
        on_refused: Callable[[Refused], None],
    ) -> None:
        self.name = name
        self.informer = Informer(
            client, CONFIG_MAP, namespace, field_selector=f"metadata.name={name}", clock=clock
        )
        self.informer.add_handler(self._seen, lambda _old, new: self._seen(new), self._deleted)
        self._on_accepted = on_accepted
        self._on_refused = on_refused
        self.accepted: Accepted | None = None
        """The newest valid configuration."""
        self.refused: Refused | None = None
        """The newest text, when it was refused; None when the newest text is the accepted one."""
        self._last_text_digest: str | None = None

    async def run(self) -> None:
        await self.informer.run()

    def _seen(self, obj: dict[str, Any]) -> None:
        outcome = read_config(obj)
        if outcome.digest is not None and outcome.digest == self._last_text_digest:
            return
        self._last_text_digest = outcome.digest
        if isinstance(outcome, Accepted):
            self.accepted, self.refused = outcome, None
            log.info("configuration received", config_map=self.name, digest=outcome.digest[:12])
            self._on_accepted(outcome)
        else:
            self.refused = outcome
            log.warning("configuration refused; keeping the last good one", error=outcome.error)
            self._on_refused(outcome)

    def _deleted(self, _obj: dict[str, Any]) -> None:
        log.warning("the ConfigMap was deleted; the data plane keeps its configuration", config_map=self.name)
        self._last_text_digest = None
