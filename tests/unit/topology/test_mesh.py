"""The mesh graph and Path naming: pair counts, underlay choice, valid and distinct names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patronus.api import Mesh
from patronus.topology.mesh import MAX_NAME_LENGTH, PathPlan, mesh_hubs, path_name, plan_paths, site_pairs

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def names(n: int) -> list[str]:
    return [f"site-{i}" for i in range(n)]


@pytest.mark.parametrize("n", range(1, 9))
def test_full_mesh_has_every_ordered_pair(n: int) -> None:
    pairs = site_pairs(names(n), "full-mesh")
    assert len(pairs) == n * (n - 1)
    assert len(set(pairs)) == len(pairs)
    assert all(a != b for a, b in pairs)
    assert pairs == sorted(pairs)


@pytest.mark.parametrize("n", range(1, 9))
def test_hub_spoke_default_hub_is_the_first_site(n: int) -> None:
    sites = names(n)
    pairs = site_pairs(sites, "hub-spoke")
    assert len(pairs) == 2 * (n - 1)
    assert all(sites[0] in pair for pair in pairs)
    assert pairs == sorted(pairs)


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in range(1, 9) for k in range(1, n + 1)])
def test_hub_spoke_with_several_hubs(n: int, k: int) -> None:
    sites = names(n)
    hubs = sites[-k:]
    pairs = site_pairs(sites, "hub-spoke", hubs)
    # hub<->spoke both ways, plus hub<->hub both ways.
    assert len(pairs) == 2 * k * (n - k) + k * (k - 1)
    spokes = set(sites) - set(hubs)
    assert not [pair for pair in pairs if pair[0] in spokes and pair[1] in spokes]


def test_seed_counts() -> None:
    sites = ["branch-nyc", "branch-sf", "branch-sea"]
    assert len(site_pairs(sites, "full-mesh")) == 6
    assert site_pairs(sites, "hub-spoke") == [
        ("branch-nyc", "branch-sea"),
        ("branch-nyc", "branch-sf"),
        ("branch-sea", "branch-nyc"),
        ("branch-sf", "branch-nyc"),
    ]


def test_pairs_do_not_depend_on_input_order() -> None:
    sites = names(6)
    shuffled = sites[::-1]
    assert site_pairs(sites, "full-mesh") == site_pairs(shuffled, "full-mesh")
    assert site_pairs(sites, "hub-spoke", ["site-2"]) == site_pairs(shuffled, "hub-spoke", ["site-2"])


def test_duplicate_sites_count_once() -> None:
    assert site_pairs(["a", "b", "a"], "full-mesh") == [("a", "b"), ("b", "a")]


def test_hubs_outside_the_sites_are_ignored() -> None:
    assert site_pairs(["a", "b", "c"], "hub-spoke", ["b", "zz"]) == site_pairs(
        ["a", "b", "c"], "hub-spoke", ["b"]
    )
    assert site_pairs(["a", "b", "c"], "hub-spoke", ["zz"]) == []


def test_mesh_hubs() -> None:
    def mesh(spec: dict[str, object]) -> Mesh:
        return Mesh.model_validate({"metadata": {"name": "m"}, "spec": spec})

    assert mesh_hubs(mesh({"sites": ["a", "b"]})) == []
    assert mesh_hubs(mesh({"sites": ["a", "b"], "topology": "hub-spoke"})) == ["a"]
    assert mesh_hubs(mesh({"sites": ["a", "b", "c"], "topology": "hub-spoke", "hubs": ["c", "b"]})) == [
        "c",
        "b",
    ]


def test_missing_default_hub_does_not_promote_another_site() -> None:
    # The mesh lists hub "a" first, but "a" does not exist yet: the spokes must not pair among themselves.
    assert plan_paths("m", {"b": ["default"], "c": ["default"]}, "hub-spoke", ["a"]) == []


def test_plan_paths_one_per_direction_and_shared_underlay() -> None:
    plans = plan_paths(
        "prod",
        {"nyc": ["fiber", "lte"], "sf": ["lte", "fiber"], "sea": ["default"]},
        "full-mesh",
    )
    by_pair: dict[tuple[str, str], list[str]] = {}
    for plan in plans:
        by_pair.setdefault((plan.source, plan.destination), []).append(plan.underlay)
    assert by_pair == {
        ("nyc", "sf"): ["fiber", "lte"],  # shared, in the source's order
        ("sf", "nyc"): ["lte", "fiber"],
        ("nyc", "sea"): ["fiber"],  # nothing shared: the source's primary
        ("sea", "nyc"): ["default"],
        ("sf", "sea"): ["lte"],
        ("sea", "sf"): ["default"],
    }
    assert plans[0] == PathPlan("prod.nyc.sea.fiber", "prod", "nyc", "sea", "fiber")
    assert len({plan.name for plan in plans}) == len(plans)


def test_plan_paths_seed_mesh_gives_six() -> None:
    sites = {name: ["default"] for name in ("branch-nyc", "branch-sf", "branch-sea")}
    plans = plan_paths("production-mesh", sites, "full-mesh")
    assert len(plans) == 6
    assert "production-mesh.branch-nyc.branch-sf.default" in {plan.name for plan in plans}


def test_plan_paths_is_deterministic() -> None:
    sites = {f"s{i}": ["fiber", "lte"] for i in range(5)}
    reordered = dict(reversed(list(sites.items())))
    assert plan_paths("m", sites, "full-mesh") == plan_paths("m", reordered, "full-mesh")


def test_site_without_underlays_uses_default() -> None:
    plans = plan_paths("m", {"a": [], "b": ["default"]}, "full-mesh")
    assert [plan.underlay for plan in plans] == ["default", "default"]


def test_path_name_readable_when_it_fits() -> None:
    assert path_name("prod", "nyc", "sf", "fiber") == "prod.nyc.sf.fiber"
    assert path_name("prod", "branch-nyc", "dc-east", "lte") == "prod.branch-nyc.dc-east.lte"
    assert DNS_SUBDOMAIN.fullmatch(path_name("prod", "branch-nyc", "dc-east", "lte"))


def test_the_names_that_collided_before_do_not() -> None:
    """``m-a-b-c-u`` was both (m, a-b, c, u) and (m, a, b-c, u); a.b and a-b were the same too."""
    assert path_name("m", "a-b", "c", "u") != path_name("m", "a", "b-c", "u")
    assert path_name("m", "a.b", "c", "u") != path_name("m", "a-b", "c", "u")
    assert path_name("m-a", "b", "c", "u") != path_name("m", "a-b", "c", "u")


def test_path_name_hashes_dotted_and_long_names() -> None:
    for args in [("mesh", "a" * 60, "b", "fiber"), ("m", "eu.paris", "us.nyc", "lte")]:
        name = path_name(*args)
        assert len(name) <= MAX_NAME_LENGTH
        assert DNS_LABEL.fullmatch(name), "no dot: never mistaken for a readable name"
        assert re.fullmatch(r".*--[a-z2-7]{20}", name)
        assert path_name(*args) == name
    long = "a" * 60
    assert path_name("mesh", long, "b", "fiber").startswith("mesh-aaaa")
    assert path_name("mesh", long, "c", "fiber") != path_name("mesh", long, "b", "fiber")
    # Distinct only past the cut: the hash still tells them apart.
    assert path_name("m", "x" * 80 + "1", "y", "u") != path_name("m", "x" * 80 + "2", "y", "u")


def test_path_name_exactly_at_the_limit() -> None:
    source = "s" * (MAX_NAME_LENGTH - len("m...d.u") + 1)
    assert path_name("m", source, "d", "u") == f"m.{source}.d.u"
    assert len(path_name("m", source + "s", "d", "u")) <= MAX_NAME_LENGTH
    assert "." not in path_name("m", source + "s", "d", "u")


def test_path_name_never_ends_in_a_dash_after_the_cut() -> None:
    source = "a" * 37 + "-b" * 20  # a dash right where the prefix is cut
    name = path_name("m", source, "d", "u")
    assert DNS_LABEL.fullmatch(name)


def test_path_name_sanitises_unexpected_input() -> None:
    for args in [("M", "A", "B", "U"), ("m", "a_b", "c", "u"), ("-", "-", "-", "-"), ("", "", "", "")]:
        assert DNS_SUBDOMAIN.fullmatch(path_name(*args)), args
    assert path_name("-", "-", "-", "-") != path_name("", "", "", "")


# Names as the API admits them: object names (RFC 1123 subdomains) and, for underlays, DNS labels of at
# most 15 characters. Small alphabets and short labels make prefixes, dashes and dots collide often.
_LABEL = st.from_regex(r"[ab0-9]([ab0-9-]{0,6}[ab0-9])?", fullmatch=True)
_SUBDOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_LONG = st.builds(lambda head, tail: head + "-" + tail, st.text("ab", min_size=40, max_size=120), _LABEL)
_OBJECT_NAME = st.one_of(_SUBDOMAIN, _LONG).filter(lambda name: len(name) <= 253)
_UNDERLAY = _LABEL.filter(lambda name: len(name) <= 15)
_TUPLE = st.tuples(_OBJECT_NAME, _OBJECT_NAME, _OBJECT_NAME, _UNDERLAY)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TUPLE, min_size=2, max_size=40, unique=True))
def test_distinct_tuples_never_share_a_path_name(tuples: list[tuple[str, str, str, str]]) -> None:
    names: dict[str, tuple[str, str, str, str]] = {}
    for args in tuples:
        name = path_name(*args)
        assert len(name) <= MAX_NAME_LENGTH, args
        assert DNS_SUBDOMAIN.fullmatch(name), args
        assert path_name(*args) == name
        assert names.setdefault(name, args) == args, f"{args} and {names[name]} both give {name}"


@settings(max_examples=300, deadline=None)
@given(_TUPLE)
def test_a_readable_name_splits_back_into_its_tuple(args: tuple[str, str, str, str]) -> None:
    name = path_name(*args)
    if "." in name:
        assert tuple(name.split(".")) == args
