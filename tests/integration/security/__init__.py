"""Attacks and faults (issue 11), each tried against the real API server (and the lab where the data
plane matters); every one must fail, be reported, or be survived with nothing of another site lost.

Here:
- test_agent_trust: an agent that writes another site's address or a forged key into its own status
  changes no peer; what the agent's identity may and may not read and write (another site's status,
  Secret, Policy, Events).
- test_site_author_attacks: a Site naming another site's key Secret (the confused deputy) gets nothing,
  and its KeysReady reasons are no oracle; duplicate public keys and overlapping subnets become conditions
  naming the other site; Path names never collide; a Mesh never takes over a Path it does not own.
- test_least_privilege: the operator converges with only namespaced rights, under a real token.
- test_clear_errors: a missing lease namespace is a warning with the fix and shows in /ready.

Elsewhere, because they need their suite's fixtures:
- admission refuses what cannot work: tests/integration/test_crd_admission.py (every rule through the API
  server and the models, with the same verdict);
- the agent does not trust its configuration: tests/unit/test_agentconfig.py, tests/unit/agent/
  test_dataplane_fuzz.py (hypothesis: no input crashes the renderers or yields an unintended statement),
  tests/integration/agent/test_policy_table_kernel.py (sampled tables through `nft -c`), and
  tests/integration/agent/test_agent_api.py (a refused configuration keeps the last good data plane);
- the API server going away does not stop the WAN: tests/integration/lab/test_api_outage.py (60 s outage,
  failover during it, reports catch up) and tests/integration/agent/test_agent_api.py;
- one bad peer does not block the others: tests/integration/agent/test_wireguard_peers.py;
- failover state matches the kernel: tests/unit/agent/test_switcher.py, tests/unit/agent/test_agent.py;
- deletion while the operator is down: tests/integration/agent/test_agent_api.py (the agent sees its
  Site deleted, tears down and exits 0);
- no false alarms at start: tests/unit/agent/test_path_monitor.py and tests/integration/lab/
  test_lab_failover.py;
- exposure (the probe responder answers on the tunnels only): tests/integration/agent/
  test_probe_exposure.py; the chart's bind addresses and RBAC modes: tests/integration/cluster/.
"""
