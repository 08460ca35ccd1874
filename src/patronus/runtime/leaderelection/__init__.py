"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Only one replica of the operator reconciles at a time. Every candidate tries to take the Lease every
``retry_period`` (with client-go's jitter); the leader renews it every ``retry_period`` and steps down
(``on_stopped_leading``, then :class:`LeadershipLost`) when it has not managed to renew for
``renew_deadline``, which is shorter than ``lease_duration``, so it stops before anyone else may start.

A lease is free when nobody holds it, when its holder released it (empty ``holderIdentity``), or when
its record has not changed for ``leaseDurationSeconds`` as *we* measured it: expiry is judged on our
monotonic clock from when we last saw the record change, never by comparing our wall clock with the
holder's ``renewTime`` (clocks of different nodes disagree). Every write is an update carrying the
``resourceVersion`` we read, so two candidates can never both win a round.

The pure part is apart from the I/O: :mod:`.config` (the checked configuration), :mod:`.record` (the
Lease's record, the records we write, expiry as observed) and :mod:`.elector` (the candidate that reads and
writes the Lease).
"""

from patronus.runtime.leaderelection.config import JITTER_FACTOR, LeaderElectionConfig
from patronus.runtime.leaderelection.elector import LeaderElector, LeadershipLost
from patronus.runtime.leaderelection.record import (
    LeaderElectionRecord,
    Observation,
    desired_record,
    released_record,
)

__all__ = [
    "JITTER_FACTOR",
    "LeaderElectionConfig",
    "LeaderElectionRecord",
    "LeaderElector",
    "LeadershipLost",
    "Observation",
    "desired_record",
    "released_record",
]
