"""Which path a policy's traffic uses, decided from path checks with hysteresis. Pure: time is passed in.

A path is *good* for a policy when its latest check is not ``down`` and its health is at least the
policy's ``failover.threshold``; otherwise it is *bad*. A path that has never answered (``unknown``) is
neither: it is not measured yet, so its checks are not taken (no false alarm at start). Early verdicts
(a path that just went down, or answers again) count as checks, the moment they arrive: failover is
as fast as the prober's down detector, and a recovered primary's cooldown starts with its first reply.

With a primary path:

- Traffic starts on the primary (before any measurement the configured choice stands).
- **Failover is fast**: a ``down`` primary moves traffic to the backup at once, if the backup has been
  measured and is not down, and is either good or clearly better than the primary (see below). A primary
  that answers but scores below the threshold moves it once that has held for ``degraded_checks``
  consecutive checks (3 by default): health dips with a single check's round trips (one probe held up
  by a busy host is a large jitter), and degradation worth moving voice for lasts; a cut does not wait.
- **Failback is slow**: traffic returns to the primary only once every primary check for
  ``cooldown_seconds`` has been good; any bad check restarts that clock. So a flapping primary causes at
  most one failback per cooldown, and none while it keeps flapping faster than the cooldown.
- **Both bad**: when the primary is bad and the backup is down or no better, traffic stays on the primary;
  when traffic is on the backup and the backup goes bad (down, or below the threshold for
  ``degraded_checks`` checks), it returns to the primary early only if the primary is clearly better.
  "Clearly better" means not down and either the other is down or the health is at least ``margin``
  points higher; the margin stops two similar bad paths from trading places every check.

Without a primary (``action.primaryPath`` unset), the policy uses the healthiest path it has heard of
(:func:`healthiest`): it moves when its current path goes bad (as above: down at once, below the
threshold once it lasts) and something better exists, and moves from a good path to a clearly better
one at most once per cooldown.

``failover_count`` counts moves away from the primary (for a policy without primary: every move after the
first choice); ``failback_count`` counts returns to the primary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from patronus.agent.probe_stats import CheckResult
from patronus.api.agentconfig import PolicyConfig

DEFAULT_MARGIN = 5.0
"""Health points by which a bad path must beat another bad path before traffic moves between them."""
DEGRADED_CHECKS = 3
"""Consecutive checks below the threshold (not down) before a path counts as bad enough to leave."""


@dataclass(frozen=True)
class FailoverPolicy:
    """The part of a Policy the failover decision needs; path ids are Path names."""

    name: str
    primary: str | None
    backup: str | None
    threshold: float
    cooldown_seconds: float

    @classmethod
    def from_config(cls, policy: PolicyConfig) -> FailoverPolicy:
        """From one entry of the agent configuration's ``policies``."""
        return cls(
            name=policy.name,
            primary=policy.action.primary_path,
            backup=policy.action.backup_path,
            threshold=policy.failover.threshold,
            cooldown_seconds=policy.failover.cooldown_seconds,
        )


@dataclass(frozen=True)
class Decision:
    """A change of the path a policy's traffic uses; the data plane should reroute on it."""

    policy: str
    previous: str | None
    path: str
    reason: str
    at: float


def healthiest(paths: Mapping[str, CheckResult]) -> str | None:
    """The path with the highest health that is measured and not down (ties: the first name), or None."""
    candidates = [name for name, result in paths.items() if result.state not in ("down", "unknown")]
    if not candidates:
        return None
    return min(candidates, key=lambda name: (-paths[name].health_score, name))


class FailoverState:
    """The failover decision of one policy; feed it every check of its paths with :meth:`observe`."""

    def __init__(
        self,
        policy: FailoverPolicy,
        *,
        margin: float = DEFAULT_MARGIN,
        degraded_checks: int = DEGRADED_CHECKS,
    ) -> None:
        if policy.cooldown_seconds < 0:
            raise ValueError("cooldown cannot be negative")
        if degraded_checks < 1:
            raise ValueError("degraded_checks must be at least 1")
        self.policy = policy
        self.margin = margin
        self.degraded_checks = degraded_checks
        self.path_in_use: str | None = policy.primary
        self.failover_count = 0
        self.failback_count = 0
        self.last_failover_at: float | None = None
        self.last_change_at: float | None = None
        self._latest: dict[str, CheckResult] = {}
        self._below: dict[str, int] = {}  # consecutive checks below the threshold, not down
        self._primary_good_since: float | None = None

    @property
    def latest(self) -> Mapping[str, CheckResult]:
        """The latest check of each path this policy has observed."""
        return dict(self._latest)

    @property
    def transitions(self) -> int:
        """Every change of path after the first choice."""
        return self.failover_count + self.failback_count

    def good(self, result: CheckResult) -> bool:
        """Whether a check is good enough for this policy's traffic."""
        return not result.is_down and result.health_score >= self.policy.threshold

    def _leave(self, path: str) -> bool:
        """Whether ``path`` is bad enough to leave: down, or below the threshold for long enough."""
        result = self._latest[path]
        return result.is_down or self._below.get(path, 0) >= self.degraded_checks

    def _clearly_better(self, a: CheckResult, b: CheckResult) -> bool:
        return not a.is_down and (b.is_down or a.health_score >= b.health_score + self.margin)

    def observe(self, path_id: str, result: CheckResult, now: float) -> Decision | None:
        """Take one check of ``path_id`` made at ``now`` (seconds, monotonic); a Decision when traffic moves.

        Checks of paths a policy with a primary does not name are ignored, and so are ``unknown`` ones.
        """
        primary, backup = self.policy.primary, self.policy.backup
        if primary is not None and path_id not in (primary, backup):
            return None
        if result.state == "unknown":
            return None  # never answered yet: no measurement to act on
        self._latest[path_id] = result
        below = not result.is_down and not self.good(result)
        self._below[path_id] = self._below.get(path_id, 0) + 1 if below else 0
        if path_id == primary:
            if not self.good(result):
                self._primary_good_since = None
            elif self._primary_good_since is None:
                self._primary_good_since = now
        if primary is None:
            target, reason = self._choose_without_primary(now)
        else:
            target, reason = self._choose_with_primary(primary, backup, now)
        if target is None or target == self.path_in_use:
            return None
        return self._move(target, reason, now)

    def _choose_with_primary(self, primary: str, backup: str | None, now: float) -> tuple[str | None, str]:
        primary_result = self._latest.get(primary)
        backup_result = self._latest.get(backup) if backup is not None else None
        if self.path_in_use == primary:
            if primary_result is None or not self._leave(primary):
                return primary, ""
            if backup_result is None or backup_result.is_down:
                return primary, ""  # both bad: nothing better to go to
            if self.good(backup_result) or self._clearly_better(backup_result, primary_result):
                return backup, "primary-down" if primary_result.is_down else "primary-below-threshold"
            return primary, ""
        since = self._primary_good_since
        if since is not None and now - since >= self.policy.cooldown_seconds:
            return primary, "primary-recovered"
        if (
            backup_result is not None
            and primary_result is not None
            and backup is not None
            and self._leave(backup)
            and self._clearly_better(primary_result, backup_result)
        ):
            return primary, "backup-worse"
        return self.path_in_use, ""

    def _choose_without_primary(self, now: float) -> tuple[str | None, str]:
        best = healthiest(self._latest)
        current = self.path_in_use
        if best is None or best == current:
            return current, ""
        if current is None:
            return best, "initial"
        current_result, best_result = self._latest[current], self._latest[best]
        if self._leave(current):
            if self.good(best_result) or self._clearly_better(best_result, current_result):
                return best, "current-below-threshold"
            return current, ""
        settled = self.last_change_at is None or now - self.last_change_at >= self.policy.cooldown_seconds
        if settled and self._clearly_better(best_result, current_result):
            return best, "healthier"
        return current, ""

    def _move(self, target: str, reason: str, now: float) -> Decision:
        decision = Decision(self.policy.name, self.path_in_use, target, reason, now)
        if reason != "initial":
            if target == self.policy.primary:
                self.failback_count += 1
            else:
                self.failover_count += 1
                self.last_failover_at = now
        self.path_in_use = target
        self.last_change_at = now
        return decision
