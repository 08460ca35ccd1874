"""The lab: the whole SD-WAN on one machine, in network namespaces, with an impairable WAN.

Each site is a network namespace (``<prefix>-<site>``) with a LAN (``lan0``, 10.<i>.0.1/24) facing a
LAN host namespace (``<prefix>-<site>-h``, 10.<i>.0.10/24) and one veth per underlay ("fiber", "lte")
into a shared WAN namespace (``<prefix>-wan``) that routes between the sites. The WAN namespace is where
impairments live: loss and outages as nftables rules, delay and jitter in a userspace relay reached
through a TUN device (the kernel has no netem).

- :mod:`patronus.lab.plan`: names and addresses, pure.
- :mod:`patronus.lab.network`: create and destroy the namespaces, links and routes with ``ip``.
- :mod:`patronus.lab.impair`: set, clear and read a link's impairment; start the relay.
- :mod:`patronus.lab.relay`: the delay relay process (``python -m patronus.lab.relay``).
"""
