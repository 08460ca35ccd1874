"""The selectors the fake's ``list_page`` and ``watch`` filter by: equality-based label selectors, and
field selectors on what every list supports (``metadata.name``, ``metadata.namespace``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from patronus.kube.fake.apply import get_path


def matches_labels(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-separated."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in _terms(selector):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Field selectors on ``metadata.name`` and ``metadata.namespace`` (what every list supports)."""
    for term in _terms(selector):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual = get_path(obj, tuple(key.strip().split(".")))
        if (actual == value.strip()) == negate:
            return False
    return True


def _terms(selector: str | None) -> Iterable[str]:
    return [term.strip() for term in (selector or "").split(",") if term.strip()]
