"""The parse memo: one parse per object while its metadata and spec stay the same, one entry per object."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from patronus.api import Site
from patronus.operator.reconcile import parsed as parsed_module
from patronus.operator.reconcile.parsed import parsed, parsed_or_error, per_version, spec_stamp


def _site(version: str, endpoint: str = "a.example.net:51820", uid: str = "uid-a") -> dict[str, Any]:
    return {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": "a", "namespace": "ns", "uid": uid, "resourceVersion": version},
        "spec": {"wireguard": {"endpoints": [endpoint]}},
    }


def test_a_version_is_parsed_once_and_a_new_one_replaces_it() -> None:
    first = parsed(Site, _site("1"))
    assert first is not None
    assert parsed(Site, _site("1")) is first
    newer = parsed(Site, _site("2", endpoint="b.example.net:51820"))
    assert newer is not None
    assert newer is not first
    assert newer.spec.wireguard.endpoints == ["b.example.net:51820"]
    assert [key for key in parsed_module._cache if key[1] == "uid-a"] == [("Site", "uid-a")]


def test_invalid_and_anonymous_objects() -> None:
    broken = _site("1", uid="uid-broken")
    broken["spec"] = {"wireguard": {"endpoints": "not a list"}}
    assert parsed(Site, broken) is None
    assert parsed(Site, None) is None
    anonymous = _site("1")
    del anonymous["metadata"]["uid"]
    assert parsed(Site, anonymous) is not None  # validated, not memoised


def test_parsed_or_error_gives_the_reason() -> None:
    good = parsed_or_error(Site, _site("1", uid="uid-good"))
    assert isinstance(good, Site)
    assert parsed_or_error(Site, _site("1", uid="uid-good")) is good
    broken = _site("1", uid="uid-bad")
    broken["spec"] = {"wireguard": {"endpoints": "not a list"}}
    error = parsed_or_error(Site, broken)
    assert isinstance(error, ValidationError)
    assert error.errors()[0]["loc"][:2] == ("spec", "wireguard")


def test_what_is_derived_from_an_object_is_computed_once_per_version() -> None:
    calls: list[str] = []

    def names(obj: dict[str, Any]) -> list[str]:
        calls.append(obj["metadata"]["resourceVersion"])
        return [obj["metadata"]["name"]]

    site = _site("1", uid="uid-derived")
    assert per_version("names", site, names) == ["a"]
    assert per_version("names", site, names) is per_version("names", _site("1", uid="uid-derived"), names)
    assert per_version("names", _site("2", uid="uid-derived"), names) == ["a"]
    assert calls == ["1", "2"], "once per version"
    assert parsed(Site, site) is not None, "another tag: a memo of its own"
    anonymous = _site("1", uid="")
    per_version("names", anonymous, names)
    per_version("names", anonymous, names)
    assert calls == ["1", "2", "1", "1"], "no uid: computed every time"


def test_a_status_write_keeps_the_parse_and_a_label_or_spec_change_does_not() -> None:
    first = parsed(Site, _site("1", uid="uid-status"))
    assert first is not None
    assert first.status is None, "the status is not parsed"
    reported = _site("2", uid="uid-status")
    reported["status"] = {"phase": "not a phase", "peers": -3}  # invalid, and not read
    assert parsed(Site, reported) is first
    labelled = _site("3", uid="uid-status")
    labelled["metadata"]["labels"] = {"tier": "edge"}
    relabelled = parsed(Site, labelled)
    assert relabelled is not first
    assert relabelled is not None
    assert relabelled.metadata.labels == {"tier": "edge"}
    moved = _site("4", endpoint="c.example.net:51820", uid="uid-status")
    moved["metadata"]["labels"] = {"tier": "edge"}
    reparsed = parsed(Site, moved)
    assert reparsed is not None
    assert reparsed.spec.wireguard.endpoints == ["c.example.net:51820"]


def test_the_stamp_ignores_only_the_status_and_the_version() -> None:
    site = _site("1")
    assert spec_stamp(site) == spec_stamp({**_site("9"), "status": {"phase": "Active"}})
    assert spec_stamp(site) != spec_stamp(_site("1", endpoint="b.example.net:51820"))
    assert spec_stamp(site) != spec_stamp(_site("1", uid="uid-other"))
