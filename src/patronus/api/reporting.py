"""How often an agent reports, and when the operator calls it quiet: the timing both sides rely on.

Agents report the way kubelets do since Kubernetes 1.17 (node heartbeats in Leases): a small, frequent
heartbeat that only the Site controller reads, and full reports only when something changed.

- Every :data:`HEARTBEAT_INTERVAL` seconds the agent renews its site's heartbeat Lease; the operator
  calls the agent quiet after :data:`HEARTBEAT_STALE_AFTER` seconds without one.
- A Site's and each Path's status are written at once when what they say changes (a path's state or a
  material move of its health, a policy installed or failed over, a configuration refused), and
  otherwise at least every :data:`STATUS_REFRESH` seconds, which is how often counters, a path's exact
  latency and ``lastChecked`` move in the API. Prometheus (the agent's ``/metrics``) has every check.

At 1,000 sites with 1,560 paths, writing everything every 10 s is 256 writes a second of whole objects,
each decoded by every controller that watches the kind; this is 100 small Lease renewals and about 40
status writes a second.
"""

from __future__ import annotations

HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_STALE_AFTER = 3 * HEARTBEAT_INTERVAL
STATUS_REFRESH = 60.0
PATH_STALE_AFTER_REFRESHES = 3
"""A path's report counts as stale after this many refresh periods (or monitoring intervals, if longer)."""
