"""No-op-aware apply: comparison, digests, and the memo of versions known to hold a manifest."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import CONFIG_MAP, PATH
from patronus.operator.reconcile.apply import (
    DIGEST_ANNOTATION,
    AppliedVersions,
    apply_if_changed,
    contains,
    with_digest,
)


class RecordingRest:
    """Stands in for the REST client: answers an apply like the API server would (a new version)."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    async def apply(self, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.applied.append(body)
        return _stored(body, version=str(100 + len(self.applied)))


def _stored(manifest: dict[str, Any], *, version: str, uid: str = "uid-1") -> dict[str, Any]:
    """``manifest`` as the API server keeps it: with uid, resourceVersion and a defaulted field."""
    metadata = {**manifest["metadata"], "uid": uid, "resourceVersion": version, "namespace": "ns"}
    return {**manifest, "metadata": metadata, "extra": {"defaulted": True}}


def _config_map(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "site-a-agent", "namespace": "ns", "labels": {"app": "agent"}},
        "data": {"config.json": value},
    }


def test_contains_is_a_subset_check_with_whole_lists_and_exact_types() -> None:
    actual = {"a": {"b": [1, 2], "c": "x", "d": True}, "server": "added"}
    assert contains(actual, {"a": {"b": [1, 2]}})
    assert contains(actual, {"a": {"c": "x", "d": True}})
    assert not contains(actual, {"a": {"b": [1]}}), "lists are compared whole"
    assert not contains(actual, {"a": {"d": 1}}), "True is not 1"
    assert not contains(actual, {"a": {"c": "y"}})
    assert not contains(actual, {"missing": "x"})
    assert not contains({"a": "x"}, {"a": {"b": "x"}})
    assert contains({"n": 2}, {"n": 2.0}), "JSON numbers compare by value"


def test_with_digest_stamps_a_copy_and_the_digest_follows_the_content() -> None:
    manifest = _config_map("one")
    stamped = with_digest(manifest)
    assert DIGEST_ANNOTATION not in manifest["metadata"].get("annotations", {}), "the input is unchanged"
    stamp = stamped["metadata"]["annotations"][DIGEST_ANNOTATION]
    assert with_digest(stamped)["metadata"]["annotations"][DIGEST_ANNOTATION] == stamp, "idempotent"
    assert with_digest(_config_map("two"))["metadata"]["annotations"][DIGEST_ANNOTATION] != stamp
    # A field removed from the desired state changes the digest, so the child is written again.
    smaller = _config_map("one")
    del smaller["metadata"]["labels"]
    assert with_digest(smaller)["metadata"]["annotations"][DIGEST_ANNOTATION] != stamp


def test_applied_versions_match_only_the_same_uid_version_and_digest() -> None:
    applied = AppliedVersions()
    obj = _stored(_config_map("one"), version="7")
    applied.record(CONFIG_MAP, obj, "d1")
    assert applied.holds(CONFIG_MAP, obj, "d1")
    assert not applied.holds(CONFIG_MAP, obj, "d2"), "another desired manifest"
    assert not applied.holds(CONFIG_MAP, _stored(_config_map("one"), version="8"), "d1"), "edited since"
    assert not applied.holds(CONFIG_MAP, _stored(_config_map("one"), version="7", uid="uid-2"), "d1"), (
        "deleted and re-created"
    )
    assert not applied.holds(PATH, obj, "d1"), "another kind with the same name"
    assert not applied.holds(CONFIG_MAP, {"metadata": {"name": "site-a-agent"}}, "d1"), "no version"


def test_applied_versions_are_bounded_and_evict_the_longest_untouched() -> None:
    applied = AppliedVersions(max_entries=2)
    objs = [_stored({**_config_map("x"), "metadata": {"name": f"cm-{i}"}}, version="1") for i in range(3)]
    applied.record(CONFIG_MAP, objs[0], "d")
    applied.record(CONFIG_MAP, objs[1], "d")
    applied.record(CONFIG_MAP, objs[0], "d")  # touched again: now the newest
    applied.record(CONFIG_MAP, objs[2], "d")
    assert len(applied) == 2
    assert applied.holds(CONFIG_MAP, objs[0], "d")
    assert not applied.holds(CONFIG_MAP, objs[1], "d")
    assert applied.holds(CONFIG_MAP, objs[2], "d")


@pytest.mark.parametrize("memo", [True, False], ids=["with-memo", "without-memo"])
async def test_apply_if_changed_writes_only_what_differs(memo: bool) -> None:
    rest = RecordingRest()
    applied = AppliedVersions() if memo else None
    desired = _config_map("one")

    result = await apply_if_changed(rest, CONFIG_MAP, desired, None, applied)  # type: ignore[arg-type]
    assert result is not None
    assert len(rest.applied) == 1
    assert rest.applied[0]["metadata"]["annotations"][DIGEST_ANNOTATION]

    # The cache now holds what was applied (plus server fields): nothing to write.
    assert await apply_if_changed(rest, CONFIG_MAP, desired, result, applied) is None  # type: ignore[arg-type]
    # Someone edited the object (new version, content changed): it is compared again and re-applied.
    edited = _stored({**rest.applied[0], "data": {"config.json": "tampered"}}, version="500")
    assert await apply_if_changed(rest, CONFIG_MAP, desired, edited, applied) is not None  # type: ignore[arg-type]
    # A new desired state is written even when the cached version was known to hold the old one.
    latest = _stored(rest.applied[-1], version="501")
    assert await apply_if_changed(rest, CONFIG_MAP, desired, latest, applied) is None  # type: ignore[arg-type]
    assert await apply_if_changed(rest, CONFIG_MAP, _config_map("two"), latest, applied) is not None  # type: ignore[arg-type]
    assert [b["data"]["config.json"] for b in rest.applied] == ["one", "one", "two"]


async def test_a_known_version_is_not_walked_again() -> None:
    rest = RecordingRest()
    applied = AppliedVersions()
    desired = _config_map("one")
    cached = _stored(with_digest(desired), version="9")
    assert await apply_if_changed(rest, CONFIG_MAP, desired, cached, applied) is None  # type: ignore[arg-type]
    # The memo answers for this version now: even content that no longer matches is not re-read,
    # which is safe because a version's content never changes without a new resourceVersion.
    cached["data"] = {"config.json": "changed in place, which the API server never does"}
    assert await apply_if_changed(rest, CONFIG_MAP, desired, cached, applied) is None  # type: ignore[arg-type]
    assert rest.applied == []
