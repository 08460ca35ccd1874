"""Parsed models of cached objects, memoised per object (kind, uid) and version.

A reconcile reads many neighbours (peers, meshes, policies); validating each of them every time made a
site's reconcile cost grow with the size of the namespace. An object's parse changes only with its
resourceVersion, so it is parsed once per version.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_MAX_ENTRIES = 50_000
# One entry per object, holding its newest parsed version: keying by version too kept every status
# write's superseded parse until the bound evicted it (tens of MiB at 1,000 sites).
_cache: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()


def per_version(tag: str, obj: dict[str, Any], compute: Callable[[dict[str, Any]], T]) -> T:
    """``compute(obj)``, memoised under ``tag`` per object (uid) and version: what is derived from an
    object changes only with its resourceVersion. Objects without both are computed every time."""
    meta = obj.get("metadata") or {}
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    if not uid or not version:
        return compute(obj)
    key = (tag, str(uid))
    held = _cache.get(key)
    if held is not None and held[0] == str(version):
        _cache.move_to_end(key)
        return held[1]  # type: ignore[no-any-return]
    result = compute(obj)
    _cache[key] = (str(version), result)
    _cache.move_to_end(key)
    if len(_cache) > _MAX_ENTRIES:
        _cache.popitem(last=False)
    return result


def parsed(model: type[M], obj: dict[str, Any] | None) -> M | None:
    """``model.model_validate(obj)``, or None when ``obj`` is None or invalid; memoised per version."""
    if obj is None:
        return None
    return per_version(model.__name__, obj, partial(_validate, model))


def parsed_or_error(model: type[M], obj: dict[str, Any]) -> M | ValidationError:
    """The memoised parse of ``obj``, or the error that says why it does not validate."""
    result = parsed(model, obj)
    if result is not None:
        return result
    try:
        return model.model_validate(obj)  # invalid ones are rare: validated again for the message
    except ValidationError as error:
        return error


def _validate(model: type[M], obj: dict[str, Any]) -> M | None:
    try:
        return model.model_validate(obj)
    except ValidationError:
        return None
