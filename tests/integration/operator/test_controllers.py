"""The four controllers against the real API server and kube-controller-manager (garbage collection)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    EVENT,
    MESH,
    PATH,
    PERSISTENT_VOLUME_CLAIM,
    POLICY,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    SITE,
)
from patronus.kube.rest import RestClient
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.integration.operator.conftest import Eventually, RunningOperator, load_example
from tests.support.manifests import EXAMPLES

GV = "sdwan.patronus.dev/v1alpha1"


def site(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"wireguard": {"endpoints": [f"{name}.example.net:51820"]}}
    body.update(spec)
    return {
        "apiVersion": GV,
        "kind": "Site",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def mesh(namespace: str, name: str, sites: list[str], topology: str = "full-mesh") -> dict[str, Any]:
    return {
        "apiVersion": GV,
        "kind": "Mesh",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"sites": sites, "topology": topology},
    }


async def create(rest: RestClient, *objects: dict[str, Any]) -> None:
    for obj in objects:
        await rest.create(obj)


async def path_names(rest: RestClient, namespace: str) -> list[str]:
    page = await rest.list_page(PATH, namespace)
    return sorted(p["metadata"]["name"] for p in page["items"])


async def get_status(rest: RestClient, kind: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict((await rest.get(kind, namespace, name)).get("status") or {})


async def exists(rest: RestClient, kind: Any, namespace: str, name: str) -> bool:
    try:
        await rest.get(kind, namespace, name)
    except NotFoundError:
        return False
    return True


async def test_mesh_paths_follow_topology_sites_and_deletion(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(
        rest,
        site(namespace, "a"),
        site(namespace, "b"),
        site(namespace, "c"),
        mesh(namespace, "m", ["a", "b", "c"]),
    )

    async def count(n: int) -> bool:
        return len(await path_names(rest, namespace)) == n

    await eventually(lambda: count(6), 30, "6 paths for a 3-site full mesh")
    paths = (await rest.list_page(PATH, namespace))["items"]
    assert {(p["spec"]["source"]["siteRef"], p["spec"]["destination"]["siteRef"]) for p in paths} == {
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "b"),
    }
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "Mesh" for p in paths)
    assert all(len(p["metadata"]["name"]) <= 63 for p in paths)

    await rest.patch_merge(MESH, namespace, "m", {"spec": {"topology": "hub-spoke"}})
    await eventually(lambda: count(4), 30, "hub-spoke prunes to 4 paths")
    hubbed = (await rest.list_page(PATH, namespace))["items"]
    assert all("a" in (p["spec"]["source"]["siteRef"], p["spec"]["destination"]["siteRef"]) for p in hubbed)

    await rest.delete(SITE, namespace, "c")
    await eventually(lambda: count(2), 30, "deleting a site removes its paths")

    async def missing_reported() -> bool:
        return (await get_status(rest, MESH, namespace, "m")).get("missingSites") == ["c"]

    await eventually(missing_reported, 30, "the mesh reports the missing site")
    status = await get_status(rest, MESH, namespace, "m")
    assert status["totalSites"] == 2
    assert status["totalPaths"] == 2

    await rest.delete(MESH, namespace, "m")
    await eventually(lambda: count(0), 60, "deleting the mesh garbage-collects its paths")


async def test_multi_site_example_reaches_its_status(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    await create(rest, *load_example(EXAMPLES / "multi-site-mesh.yaml", namespace))

    async def mesh_ready() -> bool:
        s = await get_status(rest, MESH, namespace, "production-mesh")
        return s.get("totalSites") == 3 and s.get("totalPaths") == 6

    await eventually(mesh_ready, 30, "the mesh status")

    async def sites_settled() -> bool:
        statuses = [
            await get_status(rest, SITE, namespace, n) for n in ("branch-nyc", "branch-sf", "branch-sea")
        ]
        return all(s.get("peers") == 2 for s in statuses)

    await eventually(sites_settled, 30, "every site sees its two peers")
    sf = await get_status(rest, SITE, namespace, "branch-sf")
    nyc = await get_status(rest, SITE, namespace, "branch-nyc")
    # No agent runs in this test: the site is Pending and says why.
    assert sf["phase"] == "Pending"
    conditions = {c["type"]: c for c in sf["conditions"]}
    assert conditions["AgentReporting"]["reason"] == "NeverReported"
    assert conditions["KeysReady"]["reason"] == "KeyGenerated"
    assert conditions["Ready"]["status"] == "False"
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", sf["publicKey"])
    assert nyc["publicKey"] == "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic="
    addresses = {
        (await get_status(rest, SITE, namespace, n))["overlayAddress"]
        for n in ("branch-nyc", "branch-sf", "branch-sea")
    }
    assert len(addresses) == 3
    path = (await rest.list_page(PATH, namespace))["items"][0]
    assert path["status"]["state"] == "unknown"

    # Play the agent of branch-sf: a heartbeat and healthy paths make the site Active.
    now = _now()
    await rest.apply(
        {
            "apiVersion": GV,
            "kind": "Site",
            "metadata": {"name": "branch-sf", "namespace": namespace},
            "status": {"lastHeartbeatTime": now},
        },
        field_manager="patronus-agent",
        subresource="status",
        kind=SITE,
    )
    for p in (await rest.list_page(PATH, namespace))["items"]:
        if p["spec"]["source"]["siteRef"] == "branch-sf":
            await rest.apply(
                {
                    "apiVersion": GV,
                    "kind": "Path",
                    "metadata": {"name": p["metadata"]["name"], "namespace": namespace},
                    "status": {
                        "state": "up",
                        "lastChecked": now,
                        "health": {
                            "latencyMs": 45.2,
                            "jitterMs": 2.1,
                            "packetLossPct": 0.01,
                            "healthScore": 98.4,
                        },
                    },
                },
                field_manager="patronus-agent",
                subresource="status",
                kind=PATH,
            )

    async def active() -> bool:
        return (await get_status(rest, SITE, namespace, "branch-sf")).get("phase") == "Active"

    await eventually(active, 30, "branch-sf Active once its agent reports")
    sf = await get_status(rest, SITE, namespace, "branch-sf")
    assert sf["activePaths"] == 2
    assert sf["healthScore"] == pytest.approx(98.4)
    output = control_plane.kubectl("get", "sites", "-n", namespace).stdout
    assert re.search(r"branch-sf\s+San Francisco, CA\s+Active\s+2\s+2\s+98.4", output), output


async def test_complex_policy_example_reports_unresolved_references(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(rest, *load_example(EXAMPLES / "complex-policy.yaml", namespace))

    async def reason(name: str) -> str | None:
        conds = (await get_status(rest, POLICY, namespace, name)).get("conditions") or []
        return next((c["reason"] for c in conds if c["type"] == "ReferencesResolved"), None)

    await eventually(
        lambda: _equals(reason("video-priority"), "SiteNotFound"), 30, "policy reports missing site"
    )
    path_conditions = (await get_status(rest, PATH, namespace, "path-fiber"))["conditions"]
    assert any(c["type"] == "SitesResolved" and c["status"] == "False" for c in path_conditions)

    # Once the sites exist, the references resolve; the policy waits for an agent to enforce it.
    await create(rest, site(namespace, "branch-nyc"), site(namespace, "dc-east"))
    await eventually(lambda: _equals(reason("video-priority"), "ReferencesExist"), 30, "references resolve")
    ready = next(
        c
        for c in (await get_status(rest, POLICY, namespace, "video-priority"))["conditions"]
        if c["type"] == "Ready"
    )
    assert ready["reason"] == "AwaitingAgent"


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_site_children_owners_resources_labels_and_rbac(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    await create(
        rest,
        site(namespace, "hq", resources={"cpu": "2", "memory": "4Gi", "storage": "10Gi"}),
        site(namespace, "branch"),
        mesh(namespace, "m", ["hq", "branch"]),
    )
    names = {
        "Secret": "hq-wireguard",
        "ConfigMap": "hq-agent",
        "ServiceAccount": "hq-agent",
        "Role": "hq-agent",
        "RoleBinding": "hq-agent",
        "Deployment": "hq-agent",
        "PersistentVolumeClaim": "hq-data",
        "Service": "hq-wg",
    }
    kinds = {
        "Secret": SECRET,
        "ConfigMap": CONFIG_MAP,
        "ServiceAccount": SERVICE_ACCOUNT,
        "Role": ROLE,
        "RoleBinding": ROLE_BINDING,
        "Deployment": DEPLOYMENT,
        "PersistentVolumeClaim": PERSISTENT_VOLUME_CLAIM,
        "Service": SERVICE,
    }

    async def all_children() -> bool:
        try:
            for kind, name in names.items():
                await rest.get(kinds[kind], namespace, name)
        except NotFoundError:
            return False
        return True

    await eventually(all_children, 30, "every child of the site")
    hq = await rest.get(SITE, namespace, "hq")
    for kind, name in names.items():
        child = await rest.get(kinds[kind], namespace, name)
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Site",
            "hq",
            hq["metadata"]["uid"],
            True,
        )
        assert child["metadata"]["labels"]["sdwan.patronus.dev/site"] == "hq"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "patronus-operator"

    deployment = await rest.get(DEPLOYMENT, namespace, "hq-agent")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert "NET_ADMIN" in container["securityContext"]["capabilities"]["add"]
    assert container["image"] == "registry.example/patronus-agent:test"
    branch_container = (await rest.get(DEPLOYMENT, namespace, "branch-agent"))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert branch_container["resources"]["requests"] == {
        "cpu": "1",
        "memory": "2Gi",
    }  # the operator's defaults
    pvc = await rest.get(PERSISTENT_VOLUME_CLAIM, namespace, "hq-data")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    service = await rest.get(SERVICE, namespace, "hq-wg")
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} == {(51820, "UDP")}

    # The agent's identity may write its own paths' status, and nothing of another site's.
    paths = (await rest.list_page(PATH, namespace))["items"]
    own = next(p["metadata"]["name"] for p in paths if p["spec"]["source"]["siteRef"] == "hq")
    other = next(p["metadata"]["name"] for p in paths if p["spec"]["source"]["siteRef"] == "branch")

    async def role_covers_path() -> bool:
        role = await rest.get(ROLE, namespace, "hq-agent")
        return any(own in (rule.get("resourceNames") or []) for rule in role["rules"])

    await eventually(role_covers_path, 30, "the agent's Role to name its paths")
    agent = f"system:serviceaccount:{namespace}:hq-agent"

    def can(verb: str, resource: str, name: str = "") -> bool:
        target = f"{resource}/{name}" if name else resource
        result = control_plane.kubectl(
            "auth", "can-i", verb, target, "-n", namespace, f"--as={agent}", check=False
        )
        return result.stdout.strip() == "yes"

    assert can_status(control_plane, namespace, agent, own)
    assert not can_status(control_plane, namespace, agent, other)
    assert not can("patch", "paths.sdwan.patronus.dev", own)  # the spec is not the agent's
    assert not can("delete", "paths.sdwan.patronus.dev", own)
    assert can("get", "sites.sdwan.patronus.dev", "hq")
    assert not can("get", "sites.sdwan.patronus.dev", "branch")
    assert not can("get", "secrets", "branch-wireguard")
    assert can("get", "secrets", "hq-wireguard")
    # And a real write through the impersonated identity: its own path's status, then another's.
    ok = control_plane.kubectl(
        "patch",
        "paths.sdwan.patronus.dev",
        own,
        "-n",
        namespace,
        f"--as={agent}",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"state":"up"}}',
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    denied = control_plane.kubectl(
        "patch",
        "paths.sdwan.patronus.dev",
        other,
        "-n",
        namespace,
        f"--as={agent}",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"state":"up"}}',
        check=False,
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def can_status(control_plane: ControlPlane, namespace: str, agent: str, path: str) -> bool:
    result = control_plane.kubectl(
        "auth",
        "can-i",
        "patch",
        f"paths.sdwan.patronus.dev/{path}",
        "--subresource=status",
        "-n",
        namespace,
        f"--as={agent}",
        check=False,
    )
    return result.stdout.strip() == "yes"


async def test_site_deletion_removes_it_from_peers_config(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(
        rest,
        site(namespace, "a"),
        site(namespace, "b"),
        site(namespace, "c"),
        mesh(namespace, "m", ["a", "b", "c"]),
    )

    async def peers_of_a() -> set[str]:
        try:
            config = json.loads((await rest.get(CONFIG_MAP, namespace, "a-agent"))["data"]["config.json"])
        except NotFoundError:
            return set()
        return {peer["site"] for iface in config["interfaces"] for peer in iface["peers"]}

    await eventually(lambda: _equals(peers_of_a(), {"b", "c"}), 30, "a peers with b and c")
    await rest.delete(SITE, namespace, "c")
    await eventually(lambda: _equals(peers_of_a(), {"b"}), 30, "c leaves a's configuration")

    async def children_of_c_gone() -> bool:
        return not await exists(rest, CONFIG_MAP, namespace, "c-agent")

    await eventually(children_of_c_gone, 60, "c's children garbage-collected")


async def test_no_private_key_in_configmaps_events_statuses_or_logs(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    byo_private = generate_private_key()
    await rest.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "byo", "namespace": namespace, "labels": {"sdwan.patronus.dev/site": "byo"}},
            "data": {"privateKey": base64.b64encode(byo_private.encode()).decode()},
        }
    )
    wrong_private = generate_private_key()
    await rest.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "wrong",
                "namespace": namespace,
                "labels": {"sdwan.patronus.dev/site": "mismatch"},
            },
            "data": {"privateKey": base64.b64encode(wrong_private.encode()).decode()},
        }
    )
    await create(
        rest,
        site(namespace, "generated"),
        site(
            namespace,
            "byo",
            wireguard={
                "publicKey": public_key_for(byo_private),
                "endpoints": ["byo.example:51820"],
                "privateKeySecretRef": {"name": "byo"},
            },
        ),
        site(
            namespace,
            "mismatch",
            wireguard={
                "publicKey": public_key_for(generate_private_key()),
                "endpoints": ["m.example:51820"],
                "privateKeySecretRef": {"name": "wrong"},
            },
        ),
        mesh(namespace, "m", ["generated", "byo", "mismatch"]),
    )

    async def mismatch_failed() -> bool:
        return (await get_status(rest, SITE, namespace, "mismatch")).get("phase") == "Failed"

    await eventually(mismatch_failed, 30, "a key mismatch fails the site")
    reason = next(
        c["reason"]
        for c in (await get_status(rest, SITE, namespace, "mismatch"))["conditions"]
        if c["type"] == "KeysReady"
    )
    assert reason == "KeyMismatch"

    async def generated_secret() -> dict[str, Any] | None:
        try:
            return await rest.get(SECRET, namespace, "generated-wireguard")
        except NotFoundError:
            return None

    secret = await eventually(generated_secret, 30, "the generated key Secret")
    generated_private = base64.b64decode(secret["data"]["privateKey"]).decode()
    await operator.settle()

    private_keys = {generated_private, byo_private, wrong_private}
    haystacks = []
    for kind in (CONFIG_MAP, EVENT, SITE, PATH, POLICY, MESH, DEPLOYMENT, SERVICE, ROLE):
        for obj in (await rest.list_page(kind, namespace))["items"]:
            haystacks.append(json.dumps(obj if kind in (CONFIG_MAP, EVENT) else obj.get("status") or {}))
            if kind in (DEPLOYMENT, ROLE, SERVICE):
                haystacks.append(json.dumps(obj))
    haystacks.append(operator.log.getvalue())
    assert len(operator.log.getvalue()) > 1000  # the log is really there
    for key in private_keys:
        for encoded in (key, base64.b64encode(key.encode()).decode()):
            assert not any(encoded in text for text in haystacks)


async def test_bad_references_neither_crash_nor_hot_loop(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(
        rest,
        mesh(namespace, "ghost-mesh", ["nobody", "nowhere"]),
        {
            "apiVersion": GV,
            "kind": "Path",
            "metadata": {"name": "ghost-path", "namespace": namespace},
            "spec": {"source": {"siteRef": "nobody"}, "destination": {"siteRef": "nowhere"}},
        },
        {
            "apiVersion": GV,
            "kind": "Policy",
            "metadata": {"name": "ghost-policy", "namespace": namespace},
            "spec": {
                "match": {"protocol": "udp"},
                "action": {
                    "primaryPath": {"siteRef": "nobody", "pathId": "ghost-path"},
                    "backupPath": {"siteRef": "nobody", "pathId": "no-such-path"},
                },
            },
        },
    )
    await operator.settle()
    before = operator.reconciles()
    await asyncio.sleep(5)
    assert operator.reconciles() - before <= 3, "reconciles kept running with nothing changing"
    errors = sum(
        s.value
        for m in operator.manager.metrics.registry.collect()
        if m.name == "patronus_operator_reconcile_errors"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert errors == 0
    assert (await get_status(rest, MESH, namespace, "ghost-mesh"))["missingSites"] == ["nobody", "nowhere"]


async def test_simple_site_example_is_an_external_site(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(rest, *load_example(EXAMPLES / "simple-site.yaml", namespace))

    async def keys_reason() -> str | None:
        conds = (await get_status(rest, SITE, namespace, "branch-nyc")).get("conditions") or []
        return next((c["reason"] for c in conds if c["type"] == "KeysReady"), None)

    await eventually(lambda: _equals(keys_reason(), "ExternalSite"), 30, "an external site")
    status = await get_status(rest, SITE, namespace, "branch-nyc")
    assert status["phase"] == "Pending"
    # Its agent runs on a branch box: configuration and identity, but no workload in the cluster.
    config = json.loads((await rest.get(CONFIG_MAP, namespace, "branch-nyc-agent"))["data"]["config.json"])
    assert config["site"] == "branch-nyc"
    assert config["publicKey"] == "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic="
    await rest.get(SERVICE_ACCOUNT, namespace, "branch-nyc-agent")
    for kind, name in (
        (DEPLOYMENT, "branch-nyc-agent"),
        (SERVICE, "branch-nyc-wg"),
        (SECRET, "branch-nyc-wireguard"),
    ):
        with pytest.raises(NotFoundError):
            await rest.get(kind, namespace, name)


async def test_production_example_builds_a_hub_spoke_mesh_over_two_underlays(
    operator: RunningOperator, namespace: str, eventually: Eventually
) -> None:
    rest = operator.rest
    await create(rest, *load_example(EXAMPLES / "production.yaml", namespace))

    async def paths() -> set[tuple[str, str, str]]:
        items = (await rest.list_page(PATH, namespace))["items"]
        return {
            (p["spec"]["source"]["siteRef"], p["spec"]["destination"]["siteRef"], p["spec"]["underlay"])
            for p in items
        }

    # dc-east and branch-nyc share fiber and lte; the other spokes have only their default underlay.
    expected = {
        ("dc-east", "branch-nyc", "fiber"),
        ("dc-east", "branch-nyc", "lte"),
        ("branch-nyc", "dc-east", "fiber"),
        ("branch-nyc", "dc-east", "lte"),
        ("dc-east", "branch-sf", "fiber"),
        ("branch-sf", "dc-east", "default"),
        ("dc-east", "branch-sea", "fiber"),
        ("branch-sea", "dc-east", "default"),
    }
    await eventually(lambda: _equals(paths(), expected), 30, "8 hub-spoke paths over the underlays")

    async def dc_config() -> dict[str, Any] | None:
        try:
            return dict(
                json.loads((await rest.get(CONFIG_MAP, namespace, "dc-east-agent"))["data"]["config.json"])
            )
        except NotFoundError:
            return None

    async def dc_sees_spokes() -> bool:
        config = await dc_config()
        return bool(config) and {p["site"] for i in config["interfaces"] for p in i["peers"]} == {
            "branch-nyc",
            "branch-sf",
            "branch-sea",
        }

    await eventually(dc_sees_spokes, 30, "the hub peers with every spoke")

    async def dc_policies() -> set[str]:
        return {p["name"] for p in (await dc_config() or {}).get("policies") or []}

    # Policies without paths: every site. Created after the sites, they may reach the hub's
    # configuration a moment after its peers do.
    await eventually(lambda: _equals(dc_policies(), {"voice", "web"}), 30, "the hub enforces both policies")
    config = await dc_config()
    assert config is not None
    assert [i["underlay"] for i in config["interfaces"]] == ["fiber", "lte"]
    deployment = await rest.get(DEPLOYMENT, namespace, "dc-east-agent")
    ports = {
        p["containerPort"]
        for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        if p["protocol"] == "UDP"
    }
    assert ports == {51820, 51821}
    await rest.get(PERSISTENT_VOLUME_CLAIM, namespace, "dc-east-data")
