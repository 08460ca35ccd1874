"""The site agent: it applies its configuration (WireGuard, nftables, tc), probes paths and fails over.

Measurement (probes and their statistics) and decision (failover with hysteresis) are kept apart from the
data plane: the probe wire format, statistics and failover logic are pure, only the prober does I/O.
"""
