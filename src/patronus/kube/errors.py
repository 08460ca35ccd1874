"""What can go wrong talking to the Kubernetes API, as one hierarchy.

::

    KubeError
    ├── ApiError                 the API server answered with an error Status (``status``, ``reason``)
    │   ├── NotFoundError        404: the object, its namespace or the resource does not exist
    │   ├── ConflictError        409: a resourceVersion precondition failed, or an apply conflicted
    │   │   └── AlreadyExistsError   409 AlreadyExists: ``create`` of a name that is taken
    │   └── GoneError            410: the resourceVersion is older than the server keeps; relist
    └── KubeConnectionError      the API server could not be reached, or the connection broke

Transport errors (httpx) are translated once, at the client boundary, with ``raise ... from``; nothing
above :mod:`patronus.kube` sees them. ``KubeConnectionError`` is also a ``ConnectionError``, so code that
must ride out an outage can catch the builtin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class KubeError(Exception):
    """Any failure of a Kubernetes API call."""


class ApiError(KubeError):
    """The API server refused a request; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(
        self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})


class NotFoundError(ApiError):
    """404: the object (or its namespace, or the resource) does not exist."""


class ConflictError(ApiError):
    """409: a resourceVersion precondition failed, or an apply conflicted."""


class AlreadyExistsError(ConflictError):
    """409 AlreadyExists: ``create`` of a name that is taken."""


class GoneError(ApiError):
    """410: the resourceVersion (or continue token) is older than the server keeps; relist."""


class KubeConnectionError(KubeError, ConnectionError):
    """The API server could not be reached or the connection broke."""


def api_error(status: int, body: Mapping[str, Any] | None) -> ApiError:
    """The ApiError for an HTTP status and a (possibly absent) ``Status`` body."""
    body = body or {}
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")
    details = body.get("details") if isinstance(body.get("details"), Mapping) else None
    cls: type[ApiError] = ApiError
    if status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = AlreadyExistsError if reason == "AlreadyExists" else ConflictError
    elif status == 410:
        cls = GoneError
    return cls(status, reason or "Unknown", message, details)
