"""Seconds this process spends in CPython's cyclic garbage collector, by generation (``gc.callbacks``)."""

from __future__ import annotations

import gc
import time
from typing import Any


class CollectorTime:
    """Adds up the time of every collection from :meth:`start` on; ``seconds[g]`` for generation g."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._began = 0.0

    def start(self) -> CollectorTime:
        gc.callbacks.append(self._callback)
        return self

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)

    def snapshot(self) -> tuple[list[float], list[int]]:
        return list(self.seconds), list(self.collections)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info["generation"]
        self.seconds[generation] += time.perf_counter() - self._began
        self.collections[generation] += 1


def describe(before: tuple[list[float], list[int]], after: tuple[list[float], list[int]]) -> str:
    seconds = [a - b for a, b in zip(after[0], before[0], strict=True)]
    counts = [a - b for a, b in zip(after[1], before[1], strict=True)]
    parts = ", ".join(f"gen{g} {counts[g]} in {seconds[g]:.2f} s" for g in range(3))
    return f"garbage collector: {sum(seconds):.2f} s ({parts})"
