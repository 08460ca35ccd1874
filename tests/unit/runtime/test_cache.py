"""The Indexer: lean storage, built-in and custom indexes, relist diffs."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import ObjectKey
from patronus.runtime.cache import Indexer, lean


def obj(
    name: str,
    namespace: str = "ns",
    *,
    rv: str = "1",
    labels: dict[str, str] | None = None,
    owners: tuple[str, ...] = (),
    site: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": rv,
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
    }
    if labels:
        metadata["labels"] = labels
    if owners:
        metadata["ownerReferences"] = [{"uid": uid, "kind": "Site", "name": uid} for uid in owners]
    result: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    if site:
        result["spec"] = {"source": {"siteRef": site}}
    return result


def names(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


def test_lean_drops_managed_fields_without_touching_the_input() -> None:
    original = obj("a")
    slim = lean(original)
    assert "managedFields" not in slim["metadata"]
    assert "managedFields" in original["metadata"]
    assert slim["metadata"]["resourceVersion"] == "1"
    already = lean(slim)
    assert already is slim  # nothing to drop: no copy


def test_upsert_get_delete() -> None:
    indexer = Indexer()
    old, stored = indexer.upsert(obj("a"))
    assert old is None
    assert "managedFields" not in stored["metadata"]
    assert indexer.get("ns", "a") is stored
    old, new = indexer.upsert(obj("a", rv="2"))
    assert old is stored
    assert new["metadata"]["resourceVersion"] == "2"
    assert len(indexer) == 1
    assert ObjectKey("ns", "a") in indexer
    assert indexer.delete(ObjectKey("ns", "a")) is new
    assert indexer.delete(obj("a")) is None
    assert indexer.get("ns", "a") is None
    assert len(indexer) == 0


def test_cluster_scoped_objects_have_an_empty_namespace() -> None:
    indexer = Indexer()
    indexer.upsert({"metadata": {"name": "n1", "resourceVersion": "1"}})
    assert indexer.get(None, "n1") is not None
    assert indexer.keys() == [ObjectKey("", "n1")]
    assert str(ObjectKey("", "n1")) == "n1"
    assert str(ObjectKey("ns", "a")) == "ns/a"


def test_namespace_index_and_list() -> None:
    indexer = Indexer()
    for name, namespace in (("a", "x"), ("b", "x"), ("c", "y")):
        indexer.upsert(obj(name, namespace))
    assert names(indexer.list()) == ["a", "b", "c"]
    assert names(indexer.list("x")) == ["a", "b"]
    assert names(indexer.list("y")) == ["c"]
    assert indexer.list("z") == []
    assert sorted(indexer.keys("x")) == [ObjectKey("x", "a"), ObjectKey("x", "b")]
    assert sorted(indexer.keys()) == [ObjectKey("x", "a"), ObjectKey("x", "b"), ObjectKey("y", "c")]
    assert indexer.keys("z") == []
    indexer.delete(ObjectKey("x", "a"))
    assert names(indexer.list("x")) == ["b"]
    assert indexer.keys("x") == [ObjectKey("x", "b")]


def test_label_index_follows_updates() -> None:
    indexer = Indexer()
    indexer.upsert(obj("a", labels={"app": "web", "tier": "front"}))
    indexer.upsert(obj("b", labels={"app": "web"}))
    assert names(indexer.by_index("label", "app=web")) == ["a", "b"]
    assert names(indexer.by_index("label", "tier=front")) == ["a"]
    indexer.upsert(obj("a", rv="2", labels={"app": "db"}))  # relabelled: leaves the old values
    assert names(indexer.by_index("label", "app=web")) == ["b"]
    assert names(indexer.by_index("label", "app=db")) == ["a"]
    assert indexer.by_index("label", "tier=front") == []
    indexer.delete(ObjectKey("ns", "b"))
    assert indexer.by_index("label", "app=web") == []


def test_owner_index() -> None:
    indexer = Indexer()
    indexer.upsert(obj("a", owners=("uid-1",)))
    indexer.upsert(obj("b", owners=("uid-1", "uid-2")))
    indexer.upsert(obj("c"))
    assert names(indexer.by_index("owner", "uid-1")) == ["a", "b"]
    assert names(indexer.by_index("owner", "uid-2")) == ["b"]
    indexer.delete(ObjectKey("ns", "a"))
    indexer.delete(ObjectKey("ns", "b"))
    assert indexer.by_index("owner", "uid-1") == []
    # Emptied values do not linger.
    assert indexer._indexes["owner"].values == {}


def test_custom_index_covers_existing_and_new_objects() -> None:
    indexer = Indexer()
    indexer.upsert(obj("p1", site="hq"))
    indexer.upsert(obj("p2", site="branch"))

    def by_site(o: dict[str, Any]) -> list[str]:
        ref = o.get("spec", {}).get("source", {}).get("siteRef")
        return [ref] if ref else []

    indexer.add_index("site", by_site)
    indexer.upsert(obj("p3", site="hq"))
    indexer.upsert(obj("p4"))
    assert names(indexer.by_index("site", "hq")) == ["p1", "p3"]
    indexer.upsert(obj("p1", rv="2", site="branch"))
    assert names(indexer.by_index("site", "hq")) == ["p3"]
    assert names(indexer.by_index("site", "branch")) == ["p1", "p2"]
    with pytest.raises(ValueError, match="exists"):
        indexer.add_index("site", by_site)
    with pytest.raises(KeyError, match="nope"):
        indexer.by_index("nope", "x")


def test_an_update_that_moves_no_index_value_leaves_the_index_alone() -> None:
    indexer = Indexer()
    calls: list[str] = []

    def by_site(o: dict[str, Any]) -> list[str]:
        calls.append(o["metadata"]["resourceVersion"])
        ref = o.get("spec", {}).get("source", {}).get("siteRef")
        return [ref] if ref else []

    indexer.add_index("site", by_site)
    for name in ("p1", "p2", "p3"):
        indexer.upsert(obj(name, site="hq"))
    before = indexer._indexes["site"].values["hq"]
    assert isinstance(before, set)
    indexer.upsert(obj("p1", rv="2", site="hq"))  # a status write, say: the same values
    assert indexer._indexes["site"].values["hq"] is before
    assert names(indexer.by_index("site", "hq")) == ["p1", "p2", "p3"]
    indexer.upsert(obj("p1", rv="3", site="branch"))  # a value moved: out of one, into the other
    assert names(indexer.by_index("site", "hq")) == ["p2", "p3"]
    assert names(indexer.by_index("site", "branch")) == ["p1"]
    assert calls[-2:] == ["2", "3"], "the old and the new version asked once each"


def test_replace_reports_the_difference() -> None:
    indexer = Indexer()
    indexer.replace([obj("keep"), obj("change"), obj("gone", labels={"app": "x"})], "10")
    assert indexer.resource_version == "10"
    result = indexer.replace([obj("keep"), obj("change", rv="2"), obj("new")], "20")
    assert names(result.added) == ["new"]
    assert [
        (old["metadata"]["resourceVersion"], new["metadata"]["resourceVersion"])
        for old, new in result.updated
    ] == [("1", "2")]
    assert names(result.deleted) == ["gone"]
    assert names(indexer.list()) == ["change", "keep", "new"]
    assert indexer.by_index("label", "app=x") == []
    assert indexer.resource_version == "20"
    assert not indexer.replace(indexer.list(), "30")  # nothing changed: an empty (falsy) result
