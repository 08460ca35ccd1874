"""Per-path history kept by the dashboard itself, for when no Prometheus is configured (bounded).

Every report of a Path (a new ``lastChecked``) adds one sample of latency, jitter, loss and health; the
same report seen twice (a resync, a relist) adds nothing. Each path keeps at most ``per_path`` samples
and at most ``max_paths`` paths are tracked (the least recently reported are forgotten first), so memory
stays bounded however large the mesh or long the run: 1,560 paths x 360 samples is about 50 MB at most.

Failovers are kept the same way, per policy: each change of the path in use, with its time.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TypedDict

from patronus.dashboard.views import PathView, PolicyView
from patronus.kube.timestamps import parse_time

DEFAULT_SAMPLES_PER_PATH = 360
DEFAULT_MAX_PATHS = 5000
DEFAULT_SWITCHES_PER_POLICY = 100


class Series(TypedDict):
    """Columns, as the charts take them: times in Unix seconds, values (None where not measured)."""

    time: list[float]
    latencyMs: list[float | None]
    jitterMs: list[float | None]
    lossPct: list[float | None]
    healthScore: list[float | None]
    state: list[str]


class Switch(TypedDict):
    time: float
    fromPath: str | None
    toPath: str | None
    onBackup: bool


Sample = tuple[float, float | None, float | None, float | None, float | None, str]


class PathHistory:
    """Bounded samples per path, oldest paths evicted first."""

    def __init__(self, per_path: int = DEFAULT_SAMPLES_PER_PATH, max_paths: int = DEFAULT_MAX_PATHS) -> None:
        self.per_path = per_path
        self.max_paths = max_paths
        self._paths: OrderedDict[str, deque[Sample]] = OrderedDict()

    def record(self, view: PathView) -> bool:
        """Add the report in ``view`` if it is a new one; True when a sample was added."""
        when = parse_time(view["lastChecked"])
        if when is None:
            return False
        stamp = when.timestamp()
        samples = self._paths.get(view["name"])
        if samples is None:
            samples = self._paths[view["name"]] = deque(maxlen=self.per_path)
            while len(self._paths) > self.max_paths:
                self._paths.popitem(last=False)
        elif samples and samples[-1][0] >= stamp:
            return False
        self._paths.move_to_end(view["name"])
        samples.append(
            (stamp, view["latencyMs"], view["jitterMs"], view["lossPct"], view["healthScore"], view["state"])
        )
        return True

    def forget(self, name: str) -> None:
        self._paths.pop(name, None)

    def series(self, name: str, since: float = 0.0) -> Series:
        samples = [s for s in self._paths.get(name, ()) if s[0] >= since]
        return {
            "time": [s[0] for s in samples],
            "latencyMs": [s[1] for s in samples],
            "jitterMs": [s[2] for s in samples],
            "lossPct": [s[3] for s in samples],
            "healthScore": [s[4] for s in samples],
            "state": [s[5] for s in samples],
        }

    def __len__(self) -> int:
        return len(self._paths)

    def samples(self) -> int:
        return sum(len(s) for s in self._paths.values())


class FailoverTimeline:
    """Changes of each policy's path in use, newest last, bounded per policy."""

    def __init__(self, per_policy: int = DEFAULT_SWITCHES_PER_POLICY) -> None:
        self.per_policy = per_policy
        self._current: dict[str, str | None] = {}
        self._switches: dict[str, deque[Switch]] = {}

    def observe(self, view: PolicyView, now: float) -> Switch | None:
        """Note the policy's path in use; a change from a known path is a switch (returned)."""
        name, in_use = view["name"], view["pathInUse"]
        known = name in self._current
        before = self._current.get(name)
        self._current[name] = in_use
        if not known or before == in_use or in_use is None:
            return None
        when = parse_time(view["lastFailoverTime"]) if view["onBackup"] else None
        switch: Switch = {
            "time": when.timestamp() if when else now,
            "fromPath": before,
            "toPath": in_use,
            "onBackup": view["onBackup"],
        }
        self._switches.setdefault(name, deque(maxlen=self.per_policy)).append(switch)
        return switch

    def forget(self, name: str) -> None:
        self._current.pop(name, None)
        self._switches.pop(name, None)

    def switches(self, name: str) -> list[Switch]:
        return list(self._switches.get(name, ()))
