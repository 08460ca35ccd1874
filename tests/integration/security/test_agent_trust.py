"""What a site's agent may write, and what the operator makes of it, against the real API server.

The agent is played with kubectl impersonating its ServiceAccount, so every write goes through the Role
the operator gave it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from patronus.controlplane.launcher import ControlPlane
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import CONFIG_MAP, DEPLOYMENT, LEASE, POLICY, SITE
from tests.integration.operator.conftest import Eventually, RunningOperator
from tests.integration.operator.test_controllers import GV, create, exists, get_status, mesh, site


def as_agent(
    control_plane: ControlPlane, namespace: str, site_name: str, *args: str, input_text: str | None = None
) -> Any:
    return control_plane.kubectl(
        *args,
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:{site_name}-agent",
        check=False,
        input_text=input_text,
    )


def agent_bound(control_plane: ControlPlane, namespace: str, site_name: str) -> bool:
    """The site's agent identity may read its Site: its Role and RoleBinding are in place."""
    probe = as_agent(control_plane, namespace, site_name, "get", "sites.sdwan.patronus.dev", site_name)
    return bool(probe.returncode == 0)


def agent_patches_status(
    control_plane: ControlPlane, namespace: str, site_name: str, status: dict[str, Any]
) -> None:
    result = as_agent(
        control_plane,
        namespace,
        site_name,
        "patch",
        "sites.sdwan.patronus.dev",
        site_name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert result.returncode == 0, result.stderr


async def peer_entry(operator: RunningOperator, namespace: str, site_name: str, peer: str) -> dict[str, Any]:
    try:
        config_map = await operator.rest.get(CONFIG_MAP, namespace, f"{site_name}-agent")
    except NotFoundError:
        return {}
    config = json.loads(config_map["data"]["config.json"])
    peers = [p for iface in config["interfaces"] for p in iface["peers"] if p["site"] == peer]
    return dict(peers[0]) if peers else {}


async def test_an_agent_cannot_hijack_an_address_or_a_key_through_its_status(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    await create(rest, site(namespace, "a"), site(namespace, "b"), mesh(namespace, "m", ["a", "b"]))

    async def both_peered() -> bool:
        return bool(await peer_entry(operator, namespace, "a", "b")) and bool(
            await peer_entry(operator, namespace, "b", "a")
        )

    await eventually(both_peered, 30, "a and b peer with each other")
    await operator.settle()
    a_address = (await get_status(rest, SITE, namespace, "a"))["overlayAddress"]
    b_honest = await peer_entry(operator, namespace, "a", "b")

    forged = "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic="
    await eventually(lambda: agent_bound(control_plane, namespace, "b"), 30, "b's agent Role bound")
    agent_patches_status(control_plane, namespace, "b", {"overlayAddress": a_address, "publicKey": forged})
    await operator.settle()
    assert await peer_entry(operator, namespace, "a", "b") == b_honest
    assert f"{a_address}/32" not in b_honest["allowedIPs"]
    b_status = await get_status(rest, SITE, namespace, "b")
    assert b_status["overlayAddress"] != a_address, "the operator writes its own allocation back"
    assert b_status["publicKey"] != forged

    # Garbage in the agent's status breaks nothing either: the API server refuses what is not an
    # address, and an address outside the pool is as ignored as any other.
    refused = as_agent(
        control_plane,
        namespace,
        "b",
        "patch",
        "sites.sdwan.patronus.dev",
        "b",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"overlayAddress":"x"}}',
    )
    assert refused.returncode != 0
    agent_patches_status(control_plane, namespace, "b", {"overlayAddress": "10.9.9.9"})
    await operator.settle()
    assert await peer_entry(operator, namespace, "a", "b") == b_honest
    assert operator.reconcile_errors() == 0


async def test_an_agent_identity_reaches_nothing_of_another_site(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    """Real requests as b's agent (impersonating its ServiceAccount through the Role the operator made):
    each attempt on a's objects, on Policies, on Events it did not write, or on its own spec is refused."""
    rest = operator.rest
    await create(rest, site(namespace, "a"), site(namespace, "b"), mesh(namespace, "m", ["a", "b"]))

    await eventually(lambda: agent_bound(control_plane, namespace, "b"), 30, "b's agent Role bound")
    patch_status = ["--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Failed"}}']
    attempts = {
        "a's status": ["patch", "sites.sdwan.patronus.dev", "a", *patch_status],
        "a's Site": ["get", "sites.sdwan.patronus.dev", "a"],
        "a's key Secret": ["get", "secret", "a-wireguard"],
        "a's ConfigMap": ["get", "configmap", "a-agent"],
        "Policies": ["get", "policies.sdwan.patronus.dev"],
        "its own spec": [
            "patch",
            "sites.sdwan.patronus.dev",
            "b",
            "--type=merge",
            "-p",
            '{"spec":{"location":"x"}}',
        ],
        "Secrets at large": ["get", "secrets"],
        "a's heartbeat Lease": ["patch", "lease", "a-agent", "--type=merge", "-p", _renewal()],
    }
    for what, args in attempts.items():
        result = as_agent(control_plane, namespace, "b", *args)
        assert result.returncode != 0, f"b's agent could reach {what}"
        assert "forbidden" in result.stderr.lower(), (what, result.stderr)
    # Leases: it renews the one the operator made for it, and makes none (it could squat another's name).
    spare = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "b-spare"}}
    squat = as_agent(control_plane, namespace, "b", "create", "-f", "-", input_text=json.dumps(spare))
    assert "forbidden" in squat.stderr.lower(), squat.stderr
    # Events: it may create its own, and may not change anyone's.
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "b-agent.test", "namespace": namespace},
        "involvedObject": {"apiVersion": GV, "kind": "Site", "name": "b", "namespace": namespace},
        "reason": "Test",
        "message": "written by the agent's identity",
        "type": "Normal",
    }
    made = as_agent(control_plane, namespace, "b", "create", "-f", "-", input_text=json.dumps(event))
    assert made.returncode == 0, made.stderr
    patched = as_agent(
        control_plane, namespace, "b", "patch", "event", "b-agent.test", "--type=merge", "-p", '{"count":9}'
    )
    assert "forbidden" in patched.stderr.lower()
    a_status = await get_status(rest, SITE, namespace, "a")
    assert a_status.get("phase") != "Failed"


def _renewal() -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps({"spec": {"holderIdentity": "b", "renewTime": now}})


async def test_a_lease_renewal_is_the_heartbeat(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    """The operator makes each site's Lease; the agent's identity renews its own, and that alone (no
    status write) makes the operator count the agent as reporting."""
    rest = operator.rest
    await create(rest, site(namespace, "b"))

    made = "b's heartbeat Lease made by the operator"
    await eventually(lambda: exists(rest, LEASE, namespace, "b-agent"), 30, made)

    async def reporting_reason() -> str | None:
        conditions = (await get_status(rest, SITE, namespace, "b")).get("conditions") or []
        return next((c["reason"] for c in conditions if c["type"] == "AgentReporting"), None)

    assert await reporting_reason() == "NeverReported"
    renew = ["patch", "lease", "b-agent", "--type=merge", "-p", _renewal()]
    renewed = as_agent(control_plane, namespace, "b", *renew)
    assert renewed.returncode == 0, renewed.stderr

    async def fresh() -> bool:
        return await reporting_reason() == "HeartbeatFresh"

    await eventually(fresh, 15, "the renewal to count as b's heartbeat")
    assert "lastHeartbeatTime" not in await get_status(rest, SITE, namespace, "b")
    assert (await get_status(rest, SITE, namespace, "b"))["heartbeatLease"] == "b-agent"


async def test_the_agent_reports_in_its_site_and_the_operator_sums_up_the_policy(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    await create(rest, site(namespace, "a"), site(namespace, "b"), mesh(namespace, "m", ["a", "b"]))
    await create(
        rest,
        {
            "apiVersion": GV,
            "kind": "Policy",
            "metadata": {"name": "voice", "namespace": namespace},
            "spec": {
                "match": {"protocol": "udp", "dstPortRange": "5060"},
                "action": {"primaryPath": {"siteRef": "a", "pathId": "m.a.b.default"}},
            },
        },
    )

    async def ready_reason() -> str:
        conditions = (await get_status(rest, POLICY, namespace, "voice")).get("conditions") or []
        return next((str(c["reason"]) for c in conditions if c["type"] == "Ready"), "")

    await eventually(lambda: _is(ready_reason(), "AwaitingAgent"), 30, "the policy waits for the agent")
    # The Policy's status does not wait for a's children: report once a's agent identity is bound.
    await eventually(lambda: agent_bound(control_plane, namespace, "a"), 30, "a's agent Role bound")
    report = {
        "name": "voice",
        "active": True,
        "pathInUse": "m.a.b.default",
        "matchedFlows": 7,
        "bytesRouted": 900,
    }
    agent_patches_status(control_plane, namespace, "a", {"policies": [report]})
    await eventually(lambda: _is(ready_reason(), "Enforced"), 30, "the policy enforced at a")
    status = await get_status(rest, POLICY, namespace, "voice")
    assert (status["active"], status["matchedFlows"], status["bytesRouted"]) == (True, 7, 900)
    assert status["pathInUse"] == {"siteRef": "a", "pathId": "m.a.b.default"}
    assert [entry["site"] for entry in status["sites"]] == ["a"]

    # The agent's Role: its own Site's status, Events to create; no Policy, no Event patches.
    def can(*args: str) -> bool:
        return str(as_agent(control_plane, namespace, "a", "auth", "can-i", *args).stdout).strip() == "yes"

    assert can("patch", "sites.sdwan.patronus.dev/a", "--subresource=status")
    assert not can("patch", "sites.sdwan.patronus.dev/b", "--subresource=status")
    assert not can("patch", "policies.sdwan.patronus.dev/voice", "--subresource=status")
    assert not can("get", "policies.sdwan.patronus.dev/voice")
    assert can("create", "events")
    assert not can("patch", "events")
    denied = as_agent(
        control_plane,
        namespace,
        "a",
        "patch",
        "policies.sdwan.patronus.dev",
        "voice",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"active":false}}',
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


async def test_configuration_changes_reach_the_agent_without_touching_its_pod(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    await create(rest, site(namespace, "a"))

    async def digest() -> str:
        try:
            config_map = await rest.get(CONFIG_MAP, namespace, "a-agent")
        except NotFoundError:
            return ""
        return str(config_map["metadata"]["annotations"]["sdwan.patronus.dev/config-digest"])

    first = await eventually(digest, 30, "a's configuration")
    await eventually(lambda: exists(rest, DEPLOYMENT, namespace, "a-agent"), 30, "a's agent Deployment")
    await operator.settle()
    template = (await rest.get(DEPLOYMENT, namespace, "a-agent"))["spec"]["template"]
    assert (await get_status(rest, SITE, namespace, "a"))["configMap"] == "a-agent"

    agent_patches_status(control_plane, namespace, "a", {"agent": {"version": "test", "configDigest": first}})

    async def applied() -> str:
        conditions = (await get_status(rest, SITE, namespace, "a")).get("conditions") or []
        return next((str(c["status"]) for c in conditions if c["type"] == "ConfigApplied"), "")

    await eventually(lambda: _is(applied(), "True"), 30, "ConfigApplied from the agent's report")
    await create(
        rest,
        {
            "apiVersion": GV,
            "kind": "Policy",
            "metadata": {"name": "everywhere", "namespace": namespace},
            "spec": {"match": {"protocol": "tcp", "dstPortRange": "443"}, "action": {"type": "route"}},
        },
    )
    await eventually(lambda: _differs(digest(), first), 30, "the new policy in a's configuration")
    await eventually(lambda: _is(applied(), "False"), 30, "the agent has not applied it yet")
    await operator.settle()
    assert (await rest.get(DEPLOYMENT, namespace, "a-agent"))["spec"]["template"] == template


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _differs(value: Any, other: Any) -> bool:
    return bool(await value != other)
