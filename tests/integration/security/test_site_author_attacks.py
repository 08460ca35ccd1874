"""Attacks and careless inputs against the operator, on the real API server: each must fail, or be
reported, with nothing of another site lost."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import CONFIG_MAP, DEPLOYMENT, MESH, PATH, SECRET, SITE
from patronus.topology import path_name
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.integration.operator.conftest import Eventually, RunningOperator
from tests.integration.operator.test_controllers import GV, create, exists, get_status, mesh, site


def secret(
    namespace: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = labels
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": encoded}


async def condition(
    operator: RunningOperator, namespace: str, name: str, kind: Any, type_: str
) -> dict[str, Any]:
    conditions = (await get_status(operator.rest, kind, namespace, name)).get("conditions") or []
    return next((dict(c) for c in conditions if c["type"] == type_), {})


def agent_can(control_plane: ControlPlane, namespace: str, site_name: str, *args: str) -> bool:
    result = control_plane.kubectl(
        "auth",
        "can-i",
        *args,
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{site_name}-agent",
        check=False,
    )
    return result.stdout.strip() == "yes"


async def peers_of(operator: RunningOperator, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    try:
        config_map = await operator.rest.get(CONFIG_MAP, namespace, f"{name}-agent")
    except NotFoundError:
        return {}
    config = json.loads(config_map["data"]["config.json"])
    return {p["site"]: p for i in config["interfaces"][:1] for p in i["peers"]}


async def test_a_site_cannot_borrow_another_sites_key_secret(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    """Site a names b's generated key Secret (and b's public key, which b's status shows)."""
    rest = operator.rest
    await create(rest, site(namespace, "b"))

    async def b_key() -> str:
        return str((await get_status(rest, SITE, namespace, "b")).get("publicKey") or "")

    stolen = await eventually(b_key, 30, "b's public key")
    wireguard = {
        "publicKey": stolen,
        "endpoints": ["a.example.net:51820"],
        "privateKeySecretRef": {"name": "b-wireguard"},
    }
    await create(rest, site(namespace, "a", wireguard=wireguard))

    async def keys_reason() -> str:
        return str((await condition(operator, namespace, "a", SITE, "KeysReady")).get("reason", ""))

    await eventually(lambda: _is(keys_reason(), "KeySecretNotUsable"), 30, "a refused b's Secret")
    await eventually(lambda: exists(rest, DEPLOYMENT, namespace, "a-agent"), 30, "a's Deployment")
    await operator.settle()
    assert not agent_can(control_plane, namespace, "a", "get", "secrets/b-wireguard")
    pod = (await rest.get(DEPLOYMENT, namespace, "a-agent"))["spec"]["template"]["spec"]
    assert "b-wireguard" not in json.dumps(pod)
    assert (await get_status(rest, SITE, namespace, "a"))["phase"] == "Failed"


async def test_key_secret_reasons_tell_nobody_which_secrets_exist(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    private = generate_private_key()
    await create(
        rest,
        secret(namespace, "plain", {"privateKey": private}),  # exists, not labelled
        secret(namespace, "no-key", {"other": private}, {"sdwan.patronus.dev/site": "c"}),
    )
    cases = {"a": "missing", "b": "plain", "c": "no-key"}
    for name, secret_name in cases.items():
        wireguard = {
            "publicKey": public_key_for(private if name == "b" else generate_private_key()),
            "endpoints": [f"{name}.example.net:51820"],
            "privateKeySecretRef": {"name": secret_name},
        }
        await create(rest, site(namespace, name, wireguard=wireguard))

    async def all_refused() -> bool:
        reasons = [(await condition(operator, namespace, n, SITE, "KeysReady")).get("reason") for n in cases]
        return reasons == ["KeySecretNotUsable"] * len(cases)

    await eventually(all_refused, 30, "the three sites refused their Secrets")
    messages = {
        (await condition(operator, namespace, n, SITE, "KeysReady"))["message"]
        .replace(s, "S")
        .replace(f"={n} ", "=N ")
        for n, s in cases.items()
    }
    assert len(messages) == 1, messages
    for name, secret_name in cases.items():
        assert not agent_can(control_plane, namespace, name, "get", f"secrets/{secret_name}")

    # The rule is one a user can follow: label the Secret for the site, and it is used and mounted.
    await rest.patch_merge(
        SECRET, namespace, "plain", {"metadata": {"labels": {"sdwan.patronus.dev/site": "b"}}}
    )

    async def b_ready() -> str:
        return str((await condition(operator, namespace, "b", SITE, "KeysReady")).get("reason", ""))

    await eventually(lambda: _is(b_ready(), "KeyFromSecret"), 30, "b's labelled Secret used")
    await eventually(
        lambda: _can(control_plane, namespace, "b", "get", "secrets/plain"), 30, "b's agent may read it"
    )


async def test_a_second_site_with_the_same_public_key_is_named_and_left_out(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    key = public_key_for(generate_private_key())
    await create(
        rest,
        site(namespace, "first", wireguard={"publicKey": key, "endpoints": ["first.example.net:51820"]}),
        site(namespace, "c"),
        mesh(namespace, "m", ["first", "second", "c"]),
    )
    await eventually(lambda: _has_peer(operator, namespace, "c", "first"), 30, "c peers with first")
    await asyncio.sleep(1.1)  # creationTimestamp counts whole seconds: make first the older claim
    await create(
        rest, site(namespace, "second", wireguard={"publicKey": key, "endpoints": ["evil.example.net:51820"]})
    )

    async def duplicate() -> dict[str, Any]:
        found = await condition(operator, namespace, "second", SITE, "KeysReady")
        return found if found.get("reason") == "DuplicatePublicKey" else {}

    found = await eventually(duplicate, 30, "second told its key is first's")
    assert "Site first" in found["message"]
    await operator.settle()
    peers = await peers_of(operator, namespace, "c")
    assert set(peers) == {"first"}
    assert peers["first"]["endpoint"] == "first.example.net:51820"


async def test_subnets_another_site_routes_or_that_hold_an_endpoint_are_not_routed(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(
        rest,
        site(namespace, "hq", subnets=["10.1.0.0/16"], wireguard={"endpoints": ["198.51.100.7:51820"]}),
        site(namespace, "c"),
        mesh(namespace, "m", ["hq", "branch", "c"]),
    )
    await eventually(lambda: _has_peer(operator, namespace, "c", "hq"), 30, "c peers with hq")
    await asyncio.sleep(1.1)  # creationTimestamp counts whole seconds: make hq the older claim
    await create(rest, site(namespace, "branch", subnets=["10.1.2.0/24", "198.51.100.0/24", "10.9.0.0/16"]))

    async def accepted() -> dict[str, Any]:
        found = await condition(operator, namespace, "branch", SITE, "SubnetsAccepted")
        return found if found.get("status") == "False" else {}

    found = await eventually(accepted, 30, "branch told which prefixes are contested")
    assert "10.1.2.0/24 overlaps a subnet of Site hq" in found["message"]
    assert "198.51.100.0/24 holds the endpoint of Site hq" in found["message"]

    async def branch_routes() -> list[str]:
        return list((await peers_of(operator, namespace, "c")).get("branch", {}).get("allowedIPs", []))

    await eventually(lambda: _contains(branch_routes(), "10.9.0.0/16"), 30, "branch's own prefix routed")
    routes = await branch_routes()
    assert "10.1.2.0/24" not in routes
    assert "198.51.100.0/24" not in routes
    assert "10.1.0.0/16" in (await peers_of(operator, namespace, "c"))["hq"]["allowedIPs"]


async def test_path_names_never_collide(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    """(m, a-b, c) and (m, a, b-c) gave one name before; so did a.b and a-b."""
    rest = operator.rest
    names = ["a", "a-b", "a.b", "b-c", "c"]
    await create(rest, *(site(namespace, n) for n in names), mesh(namespace, "m", names))
    wanted = {path_name("m", s, d, "default") for s in names for d in names if s != d}
    assert len(wanted) == len(names) * (len(names) - 1)

    async def all_paths() -> bool:
        items = (await rest.list_page(PATH, namespace))["items"]
        return {p["metadata"]["name"] for p in items} == wanted

    await eventually(all_paths, 60, "one Path per ordered pair")
    await operator.settle()
    before = {
        p["metadata"]["name"]: p["metadata"]["resourceVersion"]
        for p in (await rest.list_page(PATH, namespace))["items"]
    }
    await operator.settle(quiet=3.0)
    after = {
        p["metadata"]["name"]: p["metadata"]["resourceVersion"]
        for p in (await rest.list_page(PATH, namespace))["items"]
    }
    assert after == before, "no Path's spec flips back and forth"


async def test_the_mesh_reports_a_path_it_does_not_own_and_leaves_it_alone(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    taken = path_name("m", "x", "y", "default")
    users = {
        "apiVersion": GV,
        "kind": "Path",
        "metadata": {"name": taken, "namespace": namespace},
        "spec": {
            "source": {"siteRef": "x"},
            "destination": {"siteRef": "y"},
            "underlay": "mine",
            "type": "direct",
        },
    }
    control_plane.kubectl("create", "-f", "-", input_text=json.dumps(users))  # a user's, not the operator's
    await create(rest, site(namespace, "x"), site(namespace, "y"), mesh(namespace, "m", ["x", "y"]))

    async def reported() -> dict[str, Any]:
        found = await condition(operator, namespace, "m", MESH, "PathsOwned")
        return found if found.get("reason") == "PathNameTaken" else {}

    found = await eventually(reported, 30, "the mesh reports the name it cannot take")
    assert taken in found["message"]
    await operator.settle()
    stored = await rest.get(PATH, namespace, taken)
    assert stored["spec"]["underlay"] == "mine"
    assert "ownerReferences" not in stored["metadata"]
    # The operator writes the Path's status (conditions), never its spec or metadata.
    ours = [
        entry
        for entry in stored["metadata"].get("managedFields") or []
        if entry["manager"] == "patronus-operator" and entry.get("subresource") != "status"
    ]
    assert ours == []
    events = json.loads(
        control_plane.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=m", "-o", "json"
        ).stdout
    )
    assert "PathNameTaken" in {e["reason"] for e in events["items"]}

    await rest.delete(PATH, namespace, taken)

    async def owned_by_mesh() -> bool:
        try:
            path = await rest.get(PATH, namespace, taken)
        except NotFoundError:
            return False
        return any(o.get("kind") == "Mesh" for o in path["metadata"].get("ownerReferences") or [])

    await eventually(owned_by_mesh, 30, "the mesh takes the name once it is free")


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _contains(value: Any, item: Any) -> bool:
    return item in await value


async def _has_peer(operator: RunningOperator, namespace: str, name: str, peer: str) -> bool:
    return peer in await peers_of(operator, namespace, name)


async def _can(control_plane: ControlPlane, namespace: str, site_name: str, *args: str) -> bool:
    return agent_can(control_plane, namespace, site_name, *args)


pytestmark = pytest.mark.timeout(300)
