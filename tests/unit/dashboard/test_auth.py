"""KubeReviewer: a TokenReview, then a SubjectAccessReview (list sites in the namespace), cached briefly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patronus.dashboard.auth import SUBJECT_ACCESS_REVIEW, TOKEN_REVIEW, KubeReviewer
from patronus.kube.errors import KubeConnectionError
from patronus.kube.resource import ResourceKind


class ApiStub:
    """Answers reviews like the API server: ``tokens`` maps a token to a user, ``allowed`` names users."""

    def __init__(self, tokens: dict[str, str], allowed: set[str]) -> None:
        self.tokens = tokens
        self.allowed = allowed
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    async def create(self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None) -> dict[str, Any]:
        assert kind is not None
        self.calls.append((kind.kind, dict(obj["spec"])))
        if self.down:
            raise KubeConnectionError("connection refused")
        if kind == TOKEN_REVIEW:
            user = self.tokens.get(obj["spec"]["token"])
            if user is None:
                return {"status": {"authenticated": False}}
            return {
                "status": {"authenticated": True, "user": {"username": user, "groups": ["g"], "uid": "u1"}}
            }
        assert kind == SUBJECT_ACCESS_REVIEW
        return {"status": {"allowed": obj["spec"]["user"] in self.allowed}}


def reviewer(stub: ApiStub, now: list[float]) -> KubeReviewer:
    return KubeReviewer(stub, "wan", ttl=10.0, clock=lambda: now[0])  # type: ignore[arg-type]


async def test_allowed_user_and_the_questions_asked() -> None:
    stub = ApiStub({"t-alice": "alice"}, {"alice"})
    decision = await reviewer(stub, [0.0]).review("t-alice")
    assert (decision.status, decision.user) == (200, "alice")
    (_, token_spec), (_, access_spec) = stub.calls
    assert token_spec == {"token": "t-alice"}
    assert access_spec == {
        "user": "alice",
        "groups": ["g"],
        "uid": "u1",
        "resourceAttributes": {
            "namespace": "wan",
            "verb": "list",
            "group": "sdwan.patronus.dev",
            "resource": "sites",
        },
    }


async def test_unknown_token_is_401_and_a_user_without_rbac_is_403() -> None:
    stub = ApiStub({"t-bob": "bob"}, set())
    check = reviewer(stub, [0.0])
    assert (await check.review("forged")).status == 401
    denied = await check.review("t-bob")
    assert denied.status == 403
    assert denied.reason == "bob may not list sites.sdwan.patronus.dev in namespace wan"


async def test_answers_are_cached_for_the_ttl_only() -> None:
    stub = ApiStub({"t-alice": "alice"}, {"alice"})
    now = [0.0]
    check = reviewer(stub, now)
    await check.review("t-alice")
    await check.review("t-alice")
    assert len(stub.calls) == 2  # one TokenReview and one SubjectAccessReview
    stub.allowed.clear()  # RBAC revoked
    now[0] = 11.0
    assert (await check.review("t-alice")).status == 403
    assert len(stub.calls) == 4


async def test_api_trouble_is_503_and_not_cached() -> None:
    stub = ApiStub({"t-alice": "alice"}, {"alice"})
    check = reviewer(stub, [0.0])
    stub.down = True
    assert (await check.review("t-alice")).status == 503
    stub.down = False
    assert (await check.review("t-alice")).status == 200
