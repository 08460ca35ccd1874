"""Reading a prometheus_client registry in tests: the sum of a counter's samples, optionally by label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry


def sample_sum(registry: CollectorRegistry, name: str, suffix: str = "_total", **labels: str) -> float:
    """Sum of the samples of metric family ``name`` whose sample name ends with ``suffix`` and whose
    labels include ``labels`` (``name`` without ``_total``, as prometheus_client names counter families)."""
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == name
        for sample in family.samples
        if sample.name.endswith(suffix) and all(sample.labels.get(k) == v for k, v in labels.items())
    )
