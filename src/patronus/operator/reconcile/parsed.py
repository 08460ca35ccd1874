"""Parsed models of cached objects, memoised per object (kind, uid).

A reconcile reads many neighbours (peers, meshes, policies); validating each of them every time made a
site's reconcile cost grow with the size of the namespace. :func:`parsed` reads an object's metadata and
spec only, and parses again only when they change: agents rewrite a Site's or a Path's status every
minute, and the operator a Policy's 1,000-entry site list, while the spec stays as it was. Reconcilers
read status from the raw object (``Opened.status``). :func:`per_version` memoises anything else derived
from an object, once per resourceVersion.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_MAX_ENTRIES = 50_000
# One entry per object, holding its newest result: keying by version too kept every status write's
# superseded parse until the bound evicted it (tens of MiB at 1,000 sites).
_cache: OrderedDict[tuple[str, str], tuple[Hashable, Any]] = OrderedDict()

VOLATILE_METADATA = frozenset({"resourceVersion", "managedFields"})
"""Metadata every write changes: no news in itself."""


def _memoised(tag: str, uid: object, stamp: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, kept under ``(tag, uid)`` while ``stamp`` stays the same."""
    key = (tag, str(uid))
    held = _cache.get(key)
    if held is not None and held[0] == stamp:
        _cache.move_to_end(key)
        return held[1]  # type: ignore[no-any-return]
    result = compute()
    _cache[key] = (stamp, result)
    _cache.move_to_end(key)
    if len(_cache) > _MAX_ENTRIES:
        _cache.popitem(last=False)
    return result


def per_version(tag: str, obj: dict[str, Any], compute: Callable[[dict[str, Any]], T]) -> T:
    """``compute(obj)``, memoised under ``tag`` per object (uid) and version: what is derived from an
    object changes only with its resourceVersion. Objects without both are computed every time."""
    meta = obj.get("metadata") or {}
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    if not uid or not version:
        return compute(obj)
    return _memoised(tag, uid, str(version), partial(compute, obj))


def without_status(obj: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``obj`` without its status: what :func:`parsed` validates."""
    return {key: value for key, value in obj.items() if key != "status"}


def spec_stamp(obj: dict[str, Any]) -> bytes:
    """The object's content but its status and resourceVersion, as bytes: equal stamps, equal parses.
    A few microseconds, against a validation's hundreds."""
    metadata = obj.get("metadata") or {}
    stable = {key: value for key, value in metadata.items() if key not in VOLATILE_METADATA}
    return orjson.dumps([stable, *(value for key, value in obj.items() if key not in ("metadata", "status"))])


def parsed(model: type[M], obj: dict[str, Any] | None) -> M | None:
    """``model`` validated from ``obj`` without its status (left None), or None when ``obj`` is None or
    invalid; memoised per object while its metadata and spec stay the same."""
    if obj is None:
        return None
    uid = (obj.get("metadata") or {}).get("uid")
    if not uid:
        return _validate(model, obj)
    return _memoised(model.__name__, uid, spec_stamp(obj), partial(_validate, model, obj))


def parsed_or_error(model: type[M], obj: dict[str, Any]) -> M | ValidationError:
    """The memoised parse of ``obj``, or the error that says why it does not validate."""
    result = parsed(model, obj)
    if result is not None:
        return result
    try:
        return model.model_validate(without_status(obj))  # invalid ones are rare: again for the message
    except ValidationError as error:
        return error


def _validate(model: type[M], obj: dict[str, Any]) -> M | None:
    try:
        return model.model_validate(without_status(obj))
    except ValidationError:
        return None
