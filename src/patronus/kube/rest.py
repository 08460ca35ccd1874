"""The Kubernetes client Patronus uses in production: :class:`RestClient`, a :class:`KubeClient`.

Plain dicts in and out, decoded by orjson (a typed model per object cost more than the rest of a
reconcile), errors as :mod:`patronus.kube.errors`. It rides on the httpx2 ``AsyncClient`` that lightkube
builds from a kubeconfig or the in-cluster service account, so authentication (client certificates,
tokens, exec plugins) is lightkube's; lightkube's own object layer is not used.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2
import orjson
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig

from patronus.kube.errors import KubeConnectionError, api_error
from patronus.kube.resource import ResourceKind, kind_of

Object = dict[str, Any]

DEFAULT_FIELD_MANAGER = "patronus"
_IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_JSON = "application/json"


class RestClient:
    """Async Kubernetes REST calls returning plain dicts decoded by orjson."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        field_manager: str = DEFAULT_FIELD_MANAGER,
        timeout: float = 30.0,
    ) -> None:
        self.http = http
        self.field_manager = field_manager
        self.timeout = timeout

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        context: str | None = None,
        field_manager: str = DEFAULT_FIELD_MANAGER,
        timeout: float = 30.0,
    ) -> RestClient:
        """From ``path``, else ``$KUBECONFIG``, else the in-cluster service account, else ~/.kube/config."""
        return cls.from_kube_config(
            load_kube_config(path), context=context, field_manager=field_manager, timeout=timeout
        )

    @classmethod
    def from_kube_config(
        cls,
        config: KubeConfig,
        *,
        context: str | None = None,
        field_manager: str = DEFAULT_FIELD_MANAGER,
        timeout: float = 30.0,
    ) -> RestClient:
        """From a loaded lightkube ``KubeConfig`` (so a lightkube client can share it)."""
        single = config.get(context)
        assert single is not None  # get() raises rather than return None without a default
        http = client_adapter.AsyncClient(
            single, client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout))
        )
        return cls(http, field_manager=field_manager, timeout=timeout)

    # -- reads ------------------------------------------------------------------------------------

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, subresource: str | None = None
    ) -> Object:
        return await self.request("GET", kind.object_path(namespace, name, subresource))

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
        params = _params(
            limit=limit,
            labelSelector=label_selector,
            fieldSelector=field_selector,
            resourceVersion=resource_version,
        )
        if continue_token:
            params["continue"] = continue_token
        return await self.request("GET", kind.collection_path(namespace), params=params)

    async def watch(
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
        """Watch events (``{"type": ..., "object": ...}``) until the server ends the stream.

        A 410 (as HTTP status or as an ERROR event) raises :class:`GoneError`; other ERROR events raise
        :class:`ApiError`. ``read_timeout`` None waits for data forever (callers bound silence themselves).
        """
        params = _params(
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks="true" if allow_bookmarks else None,
            labelSelector=label_selector,
            fieldSelector=field_selector,
        )
        timeout = httpx2.Timeout(self.timeout, read=read_timeout)
        try:
            async with self.http.stream(
                "GET",
                kind.collection_path(namespace),
                params=params,
                timeout=timeout,
                headers={"Accept": _JSON},
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise api_error(response.status_code, _decode_or_none(response.content))
                buffer = bytearray()  # one JSON event per line; an event may span chunks
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    start = 0
                    while (end := buffer.find(b"\n", start)) != -1:
                        if end > start:
                            yield _event(orjson.loads(buffer[start:end]))
                        start = end + 1
                    del buffer[:start]
                if buffer.strip():
                    yield _event(orjson.loads(buffer))
        except httpx2.TransportError as error:
            raise KubeConnectionError(f"watch {kind}: {error!r}") from error

    # -- writes -----------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None) -> Object:
        kind = kind or kind_of(obj)
        namespace = obj.get("metadata", {}).get("namespace")
        return await self.request(
            "POST", kind.collection_path(namespace), body=obj, params=_params(fieldManager=self.field_manager)
        )

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str | None = None,
        force: bool = True,
        subresource: str | None = None,
        *,
        kind: ResourceKind | None = None,
    ) -> Object:
        """Server-side apply ``obj``: the full intent (apiVersion, kind, metadata.name, fields)."""
        kind = kind or kind_of(obj)
        metadata = obj["metadata"]
        params = _params(fieldManager=field_manager or self.field_manager, force="true" if force else None)
        return await self.request(
            "PATCH",
            kind.object_path(metadata.get("namespace"), metadata["name"], subresource),
            body=obj,
            params=params,
            content_type="application/apply-patch+yaml",  # JSON is YAML; the server takes it as is
        )

    async def replace(
        self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None, subresource: str | None = None
    ) -> Object:
        """PUT the whole object; the server refuses (409) when ``metadata.resourceVersion`` is stale."""
        kind = kind or kind_of(obj)
        metadata = obj["metadata"]
        return await self.request(
            "PUT",
            kind.object_path(metadata.get("namespace"), metadata["name"], subresource),
            body=obj,
            params=_params(fieldManager=self.field_manager),
        )

    async def patch_merge(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Object:
        return await self.request(
            "PATCH",
            kind.object_path(namespace, name, subresource),
            body=patch,
            params=_params(fieldManager=self.field_manager),
            content_type="application/merge-patch+json",
        )

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> Object:
        """Delete; returns the object (being finalized) or a Status. ``propagation_policy``: Foreground,
        Background or Orphan; ``preconditions``: ``{"uid": ...}`` / ``{"resourceVersion": ...}``."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = dict(preconditions)
        return await self.request("DELETE", kind.object_path(namespace, name), body=body)

    # -- plumbing ---------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = _JSON,
    ) -> Object:
        """One API call; the decoded JSON response, or :class:`ApiError` / :class:`KubeConnectionError`."""
        headers = {"Accept": _JSON}
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            response = await self.http.request(method, path, params=params, content=content, headers=headers)
        except httpx2.TransportError as error:
            raise KubeConnectionError(f"{method} {path}: {error!r}") from error
        decoded = _decode_or_none(response.content)
        if response.status_code >= 400:
            raise api_error(response.status_code, decoded)
        return decoded or {}

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _params(**values: str | int | None) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def _decode_or_none(content: bytes) -> Object | None:
    try:
        decoded = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        return {"message": content[:500].decode(errors="replace")}
    return decoded if isinstance(decoded, dict) else None


def _event(event: Object) -> Object:
    """Pass a watch event through, turning an ERROR event (a Status) into the matching exception."""
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise api_error(int(status.get("code") or 500), status)
    return event


def load_kube_config(path: str | os.PathLike[str] | None = None) -> KubeConfig:
    """``path``, else ``$KUBECONFIG`` (its first file, as kubectl does), else the in-cluster service
    account, else ``~/.kube/config``."""
    if path is not None:
        return KubeConfig.from_file(path)
    if env := os.environ.get("KUBECONFIG"):
        return KubeConfig.from_file(env.split(os.pathsep)[0])
    if os.environ.get("KUBERNETES_SERVICE_HOST") and _IN_CLUSTER_TOKEN.exists():
        return KubeConfig.from_service_account()
    return KubeConfig.from_file("~/.kube/config")
