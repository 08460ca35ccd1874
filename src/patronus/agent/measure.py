"""What the agent believes about a path after each check: loss over a window, and no false alarms at start.

A check is a handful of probes (five by default), so on its own it can only say 0, 20, 40 ... % loss, and
one lost probe would score the path about 45 and fail voice over for nothing. So, per path:

- loss (and with it the health score and the state) is taken over the last ``window`` probes
  (:class:`~patronus.agent.probe_stats.LossWindow`); latency and jitter stay the check's own;
- a path that has **never answered** is ``unknown``, not lossy and not down: probes sent before a tunnel's
  first handshake say nothing about the path. The loss window starts at the first probe that came back;
- a path still silent ``grace`` seconds after its first check is ``down`` after all, so a link broken from
  the start still moves traffic to its backup;
- once a path has answered, a check with no answer at all is ``down`` at once (failover must be fast).
  Such a check is an outage, not loss: its probes stay out of the window. Otherwise a cut of a few
  seconds would leave a recovered path "lossy" for its next 100 probes, holding its traffic off it for
  20 s beyond the failback cooldown; a flapping link is caught by the cooldown instead (every down check
  restarts it).

Pure: time is passed in (monotonic seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from patronus.agent.probe_stats import DEFAULT_DEGRADED_BELOW, CheckResult, LossWindow, PathState
from patronus.topology.health import health_score

LOSS_WINDOW_PROBES = 100
"""Loss and health are judged over about this many recent probes."""
START_GRACE_SECONDS = 30.0
"""How long a path that never answered is ``unknown`` before it counts as ``down``."""


@dataclass
class _Path:
    window: LossWindow
    first_check_at: float
    answered: bool = False


def _outcomes(result: CheckResult) -> Sequence[float | None]:
    """The check's probes in send order; a result made without them stands for received-then-lost."""
    if result.rtts_ms:
        return result.rtts_ms
    return [0.0] * result.received + [None] * (result.sent - result.received)


class Measurements:
    """The per-path state behind :meth:`observe`: one loss window per path, and whether it ever answered."""

    def __init__(
        self,
        *,
        window: int = LOSS_WINDOW_PROBES,
        grace: float = START_GRACE_SECONDS,
        degraded_below: float = DEFAULT_DEGRADED_BELOW,
    ) -> None:
        self.window = window
        self.grace = grace
        self.degraded_below = degraded_below
        self._paths: dict[str, _Path] = {}

    def observe(self, path: str, raw: CheckResult, now: float) -> CheckResult:
        """The check of ``path`` as the agent acts on and reports it (see the module docstring)."""
        state = self._paths.get(path)
        if state is None:
            state = self._paths[path] = _Path(LossWindow(self.window), now)
        probes = _outcomes(raw)
        if not state.answered:
            first = next((i for i, rtt in enumerate(probes) if rtt is not None), None)
            if first is None:
                if now - state.first_check_at < self.grace:
                    return replace(raw, state="unknown", loss_pct=0.0, health_score=0.0)
                return raw  # silent since the start, past the grace: down
            state.answered = True
            probes = probes[first:]
        if raw.received == 0:
            return replace(raw, health_score=0.0, state="down")
        state.window.extend(probes)
        loss = state.window.loss_pct if state.window.loss_pct is not None else raw.loss_pct
        health = health_score(raw.latency_ms or 0.0, raw.jitter_ms or 0.0, loss)
        verdict: PathState = "degraded" if health < self.degraded_below else "up"
        return replace(raw, loss_pct=loss, health_score=health, state=verdict)

    def answered(self, path: str) -> bool:
        """Whether ``path`` has ever answered a probe."""
        state = self._paths.get(path)
        return state is not None and state.answered

    def retain(self, paths: Iterable[str]) -> None:
        """Forget every path not in ``paths`` (removed from the configuration)."""
        keep = set(paths)
        for gone in set(self._paths) - keep:
            del self._paths[gone]
