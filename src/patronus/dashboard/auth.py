"""Who may look: a bearer token checked as kube-rbac-proxy checks it, by the API server itself.

A request carries a token (``Authorization: Bearer``, or the cookie the login page sets, because a
browser's EventSource cannot send headers). A ``TokenReview`` says whose it is (401 if nobody's); a
``SubjectAccessReview`` asks whether that user may ``list`` Sites (``sdwan.patronus.dev``) in the
dashboard's namespace (403 if not). The dashboard never decides on its own: Kubernetes RBAC does, and
revoking a RoleBinding revokes the dashboard within :data:`DEFAULT_TTL` seconds (answers are cached,
keyed by a hash of the token, never by the token itself).

The dashboard's own ServiceAccount needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews``
(the ``system:auth-delegator`` ClusterRole), as kube-rbac-proxy's does.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, KubeConnectionError
from patronus.kube.resource import SITE, ResourceKind
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

TOKEN_REVIEW = ResourceKind("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False)
SUBJECT_ACCESS_REVIEW = ResourceKind(
    "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False
)
DEFAULT_TTL = 10.0
CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Decision:
    """``status`` is the HTTP answer: 200 allowed, 401 not authenticated, 403 not authorized, 503 unknown."""

    status: int
    user: str | None = None
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


class Reviewer(Protocol):
    async def review(self, token: str) -> Decision: ...


def token_review(token: str, audiences: list[str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    return {"apiVersion": TOKEN_REVIEW.api_version, "kind": "TokenReview", "spec": spec}


def access_review(user: dict[str, Any], namespace: str) -> dict[str, Any]:
    """May ``user`` (a TokenReview's ``status.user``) list Sites in ``namespace``?"""
    spec: dict[str, Any] = {
        "user": user.get("username", ""),
        "groups": user.get("groups") or [],
        "resourceAttributes": {
            "namespace": namespace,
            "verb": "list",
            "group": SITE.group,
            "resource": SITE.plural,
        },
    }
    if user.get("uid"):
        spec["uid"] = user["uid"]
    if user.get("extra"):
        spec["extra"] = user["extra"]
    return {"apiVersion": SUBJECT_ACCESS_REVIEW.api_version, "kind": "SubjectAccessReview", "spec": spec}


class KubeReviewer:
    """TokenReview + SubjectAccessReview against the API server, with a short bounded cache."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        audiences: list[str] | None = None,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.audiences = audiences
        self.ttl = ttl
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, Decision]] = OrderedDict()

    async def review(self, token: str) -> Decision:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        try:
            decision = await self._ask(token)
        except (ApiError, KubeConnectionError) as error:
            log.warning("token or access review failed", error=str(error))
            return Decision(503, reason="the API server could not review the token")
        self._cache[key] = (self.clock() + self.ttl, decision)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return decision

    async def _ask(self, token: str) -> Decision:
        reviewed = await self.client.create(token_review(token, self.audiences), kind=TOKEN_REVIEW)
        status = reviewed.get("status") or {}
        if not status.get("authenticated"):
            return Decision(401, reason="the token was not accepted")
        user = status.get("user") or {}
        name = str(user.get("username", ""))
        answer = await self.client.create(access_review(user, self.namespace), kind=SUBJECT_ACCESS_REVIEW)
        if (answer.get("status") or {}).get("allowed"):
            return Decision(200, user=name)
        return Decision(
            403, user=name, reason=f"{name} may not list sites.{SITE.group} in namespace {self.namespace}"
        )
