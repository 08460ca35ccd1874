"""The one seam between Patronus and the Kubernetes API: the :class:`KubeClient` protocol.

Everything that talks to the API (informers, reconcilers, leader election, events, the agent's reports,
CRD installation) takes a ``KubeClient``. Production uses :class:`patronus.kube.rest.RestClient`; unit
tests use :class:`patronus.kube.fake.FakeKube`, an in-memory API server with the same behaviour where
controllers depend on it. Objects are plain JSON dicts in the API server's own spelling; errors are the
:mod:`patronus.kube.errors` hierarchy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from patronus.kube.resource import ResourceKind

Object = dict[str, Any]


class KubeClient(Protocol):
    """Async Kubernetes API calls on plain dicts; ``field_manager`` names the writer for server-side apply."""

    field_manager: str

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, subresource: str | None = None
    ) -> Object:
        """One object; :class:`~patronus.kube.errors.NotFoundError` when it does not exist."""
        ...

    async def list_page(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        limit: int | None = 500,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> Object:
        """One page of a LIST: ``items``, and ``metadata.continue`` / ``metadata.resourceVersion``."""
        ...

    def watch(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[Object]:
        """Watch events (``{"type": ..., "object": ...}``) from ``resource_version`` until the stream ends;
        a version too old raises :class:`~patronus.kube.errors.GoneError`."""
        ...

    async def create(self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None) -> Object:
        """Create; :class:`~patronus.kube.errors.AlreadyExistsError` when the name is taken."""
        ...

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str | None = None,
        force: bool = True,
        subresource: str | None = None,
        *,
        kind: ResourceKind | None = None,
    ) -> Object:
        """Server-side apply ``obj`` (the full intent of ``field_manager``), to ``subresource`` if given."""
        ...

    async def replace(
        self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None, subresource: str | None = None
    ) -> Object:
        """Update (PUT) the whole object; a stale ``metadata.resourceVersion`` raises ConflictError."""
        ...

    async def patch_merge(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Object:
        """A JSON merge patch (RFC 7386)."""
        ...

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> Object:
        """Delete; returns the object (still being finalized) or a Status."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
