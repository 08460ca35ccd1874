"""How a write to the fake changes an object's fields, as kube-apiserver does it.

- *Scopes*: kinds with a status subresource ignore ``status`` on the main resource and everything but
  ``status`` on the subresource.
- *Server-side apply*: each field manager owns the leaf paths it set, per scope. An apply removes the
  fields its manager set before and leaves out now (unless another manager also owns them), takes over
  fields others own with ``force``, and conflicts (409) without it. Lists are atomic, as an untyped
  schema makes them.
- *Merge patch*: RFC 7386.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from patronus.kube.client import Object
from patronus.kube.errors import ApiError, ConflictError
from patronus.kube.resource import (
    DEPLOYMENT,
    MESH,
    NAMESPACE,
    PATH,
    PERSISTENT_VOLUME_CLAIM,
    POLICY,
    SERVICE,
    SITE,
    ResourceKind,
)

STATUS_SUBRESOURCE_KINDS = frozenset(
    k.plural for k in (SITE, PATH, POLICY, MESH, DEPLOYMENT, SERVICE, PERSISTENT_VOLUME_CLAIM, NAMESPACE)
)

FieldPath = tuple[str, ...]
Managed = dict[str, dict[str, set[FieldPath]]]
"""Field manager -> (subresource scope: "" or "status") -> the leaf paths it set."""

_IDENTITY_FIELDS = frozenset({"apiVersion", "kind"})
SYSTEM_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"}
)
MISSING = object()


# -- scopes -------------------------------------------------------------------------------------------------


def scope_of(kind: ResourceKind, subresource: str | None) -> str:
    if subresource not in (None, "status"):
        raise ApiError(404, "NotFound", f"the fake serves no {subresource} subresource")
    return "status" if subresource == "status" and kind.plural in STATUS_SUBRESOURCE_KINDS else ""


def scoped(body: Object, kind: ResourceKind, scope: str) -> Object:
    """What of ``body`` a write to ``scope`` may set: status alone, or everything but status."""
    identity = {k: v for k, v in body.items() if k in ("apiVersion", "kind")}
    if scope == "status":
        return {**identity, "status": body.get("status") or {}}
    if kind.plural in STATUS_SUBRESOURCE_KINDS:
        return {k: v for k, v in body.items() if k != "status"}
    return body


def user_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata a client may set (labels, annotations, finalizers, owner references ...)."""
    return {k: v for k, v in meta.items() if k not in SYSTEM_METADATA}


# -- field paths --------------------------------------------------------------------------------------------


def leaf_paths(obj: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """The paths a manager sets: every leaf; a list is one leaf (atomic)."""
    if isinstance(obj, dict) and obj:
        paths: set[FieldPath] = set()
        for key, value in obj.items():
            if not prefix and key in _IDENTITY_FIELDS:
                continue
            if prefix == ("metadata",) and key in SYSTEM_METADATA:
                continue
            paths |= leaf_paths(value, (*prefix, key))
        return paths
    return {prefix} if prefix else set()


def get_path(obj: Any, path: FieldPath) -> Any:
    """The value at ``path``, or :data:`MISSING`."""
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
    return obj


def _set(obj: Object, path: FieldPath, value: Any) -> None:
    for part in path[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[path[-1]] = copy.deepcopy(value)


def _unset(obj: Object, path: FieldPath) -> None:
    parents = []
    node: Any = obj
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        parents.append((node, part))
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, part in reversed(parents):  # empty maps left behind go too, as the API server prunes them
        if parent[part] == {}:
            del parent[part]


# -- server-side apply and merge patch -----------------------------------------------------------------------


def server_side_apply(
    current: Object, managed: Managed, intent: Object, manager: str, scope: str, *, force: bool
) -> Object:
    """The object after ``manager`` applied ``intent`` to ``scope``; updates ``managed`` in place."""
    applied = leaf_paths(intent)
    others = {m: s.get(scope, set()) for m, s in managed.items() if m != manager}
    conflicts = sorted(
        ".".join(path)
        for owner, paths in others.items()
        for path in applied & paths
        if get_path(current, path) != get_path(intent, path)
    )
    if conflicts and not force:
        raise ConflictError(409, "Conflict", f"Apply failed with conflicts: {', '.join(conflicts)}")
    updated = copy.deepcopy(current)
    previously = managed.get(manager, {}).get(scope, set())
    still_owned = set().union(*others.values()) if others else set()
    for path in previously - applied - still_owned:
        _unset(updated, path)
    for path in applied:
        _set(updated, path, get_path(intent, path))
        for paths in others.values():
            if path in paths and get_path(current, path) != get_path(intent, path):
                paths.discard(path)  # force took it over
    managed.setdefault(manager, {})[scope] = applied
    for owner, paths in others.items():
        managed[owner][scope] = paths
    return updated


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
