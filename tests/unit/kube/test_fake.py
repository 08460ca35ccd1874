"""What FakeKube offers beyond the contract it shares with the real API server (tests/integration/kube)."""

from __future__ import annotations

import pytest

from patronus.kube.errors import GoneError, KubeConnectionError
from patronus.kube.fake import FakeKube, matches_fields, matches_labels, merge_patch
from patronus.kube.resource import CONFIG_MAP, SECRET, SITE


def config_map(name: str = "cm", **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


async def test_writes_are_recorded_and_seeding_is_not() -> None:
    fake = FakeKube()
    fake.seed(config_map("seeded"))
    mark = fake.mark()
    await fake.get(CONFIG_MAP, "ns", "seeded")
    await fake.apply(config_map("new", a="1"), field_manager="op")
    writes = fake.writes(mark)
    assert [(w.verb, w.kind, w.name, w.field_manager) for w in writes] == [
        ("apply", "configmaps", "new", "op")
    ]
    assert writes[0].body is not None
    assert writes[0].body["data"] == {"a": "1"}


async def test_injected_failures_hit_the_matching_requests_only() -> None:
    fake = FakeKube()
    fake.seed(config_map())
    fake.fail_next(KubeConnectionError("cut"), verb="get", kind=CONFIG_MAP, times=2)
    for _ in range(2):
        with pytest.raises(KubeConnectionError):
            await fake.get(CONFIG_MAP, "ns", "cm")
    assert (await fake.get(CONFIG_MAP, "ns", "cm"))["metadata"]["name"] == "cm"


async def test_a_watch_from_a_compacted_version_is_gone() -> None:
    fake = FakeKube()
    first = await fake.create(config_map())
    await fake.apply(config_map(a="1"), field_manager="m")
    fake.compact()
    with pytest.raises(GoneError):
        async for _ in fake.watch(CONFIG_MAP, "ns", resource_version=first["metadata"]["resourceVersion"]):
            pass


async def test_deleting_an_owner_collects_its_dependents() -> None:
    fake = FakeKube()
    owner = await fake.create(
        {
            "apiVersion": SITE.api_version,
            "kind": "Site",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {},
        }
    )
    child = config_map("child")
    child["metadata"]["ownerReferences"] = [
        {"apiVersion": SITE.api_version, "kind": "Site", "name": "a", "uid": owner["metadata"]["uid"]}
    ]
    await fake.create(child)
    await fake.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated", "namespace": "ns"}}
    )
    await fake.delete(SITE, "ns", "a")
    assert fake.object(CONFIG_MAP, "ns", "child") is None
    assert fake.object(SECRET, "ns", "unrelated") is not None


async def test_generate_name_gets_a_suffix() -> None:
    fake = FakeKube()
    created = await fake.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "ev.", "namespace": "ns"}}
    )
    assert created["metadata"]["name"].startswith("ev.")
    assert len(created["metadata"]["name"]) > 3


async def test_managers_show_who_owns_which_field() -> None:
    fake = FakeKube()
    await fake.apply(config_map(a="1"), field_manager="m1")
    await fake.apply(config_map(b="2"), field_manager="m2")
    owners = fake.managers(CONFIG_MAP, "ns", "cm")
    assert ("data", "a") in owners["m1"]
    assert ("data", "b") in owners["m2"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=x", True),
        ("app==x", True),
        ("app!=x", False),
        ("app", True),
        ("!app", False),
        ("app=x,tier=y", False),
        ("", True),
    ],
)
def test_label_selectors(selector: str, expected: bool) -> None:
    assert matches_labels({"metadata": {"labels": {"app": "x"}}}, selector) is expected


def test_field_selectors() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}}
    assert matches_fields(obj, "metadata.name=a")
    assert not matches_fields(obj, "metadata.name!=a")
    assert not matches_fields(obj, "metadata.namespace=other")


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }


async def test_a_status_merge_patch_touches_only_the_status() -> None:
    fake = FakeKube()
    await fake.create(
        {
            "apiVersion": SITE.api_version,
            "kind": "Site",
            "metadata": {"name": "a", "namespace": "ns"},
            "spec": {"x": 1},
        }
    )
    patched = await fake.patch_merge(SITE, "ns", "a", {"status": {"phase": "Active"}}, subresource="status")
    assert patched["metadata"]["name"] == "a"
    assert patched["status"] == {"phase": "Active"}
    assert patched["spec"] == {"x": 1}


async def test_a_watch_that_needs_events_the_history_no_longer_holds_is_gone() -> None:
    fake = FakeKube(history=3)
    first = await fake.create(config_map("a"))
    for index in range(5):
        await fake.apply(config_map("a", n=str(index)), field_manager="m")
    with pytest.raises(GoneError):
        async for _ in fake.watch(CONFIG_MAP, "ns", resource_version=first["metadata"]["resourceVersion"]):
            pass
