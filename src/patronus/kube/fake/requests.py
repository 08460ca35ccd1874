"""What the fake records of each request, and the failures a test asks it to inject."""

from __future__ import annotations

from dataclasses import dataclass

from patronus.kube.client import Object

WRITE_VERBS = frozenset({"create", "apply", "replace", "patch", "delete"})


@dataclass(frozen=True, slots=True)
class Request:
    """One call the fake answered (or failed on purpose)."""

    verb: str
    kind: str
    namespace: str
    name: str
    subresource: str | None = None
    field_manager: str | None = None
    body: Object | None = None

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass(slots=True)
class Injected:
    """An error for the next ``times`` requests that match (None matches anything)."""

    verb: str | None
    kind: str | None
    name: str | None
    error: Exception
    times: int

    def matches(self, request: Request) -> bool:
        return (
            self.times > 0
            and self.verb in (None, request.verb)
            and self.kind in (None, request.kind)
            and self.name in (None, request.name)
        )
