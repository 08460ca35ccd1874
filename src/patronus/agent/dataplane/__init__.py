"""The agent's data plane: WireGuard interfaces, policy routing (nftables marks + ``ip rule``), QoS (htb).

Every module keeps planning pure (a function from current and desired state to commands or an ``nft -f``
script) apart from execution (one :class:`~patronus.agent.dataplane.commands.Runner` call), so the plans
are unit-tested without root and the integration tests check only that the kernel does what the plan says.

Everything runs through ``ip``, ``wg``, ``nft`` and ``tc`` (optionally inside ``ip netns exec <ns>``):
no netlink library is needed, and what the agent does can be replayed by hand from its debug log.
"""
