"""The lab's agent command: the names the operator gave the site's ConfigMap and key Secret, quoted."""

from __future__ import annotations

import shlex
from pathlib import Path

from patronus.lab.agents import agent_command
from patronus.lab.manifests import LAB_NAMESPACE
from patronus.lab.plan import plan_lab
from patronus.operator.site.children import child_names


def test_the_agent_is_told_its_config_map_and_key_secret() -> None:
    plan = plan_lab(("a", "b"), prefix="lx01")
    command = agent_command(plan, "a", Path("/tmp/lab dir/a.kubeconfig"), python="/usr/bin/python3")
    assert command[:4] == ["ip", "netns", "exec", plan.site("a").namespace]
    inner = command[-1]
    assert inner.startswith("mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard && exec ")
    args = shlex.split(inner.partition(" && exec ")[2])
    assert args[:5] == ["/usr/bin/python3", "-m", "patronus", "agent", "run"]
    options = dict(zip(args[5::2], args[6::2], strict=True))
    assert options == {
        "--site": "a",
        "--namespace": LAB_NAMESPACE,
        "--config-map": child_names("a").config_map,
        "--heartbeat-lease": child_names("a").lease,
        "--key-secret": child_names("a").secret,
        "--kubeconfig": "/tmp/lab dir/a.kubeconfig",
    }
