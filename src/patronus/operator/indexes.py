"""Cache indexes and event mappers: which objects a change to another object concerns.

Index values are ``namespace/name`` so that lookups never cross namespaces. All pure functions of one
cached object.
"""

from __future__ import annotations

from typing import Any

from patronus.kube.resource import ObjectKey
from patronus.runtime.cache import Object

BY_SOURCE = "source"  # Paths by their source site
BY_DESTINATION = "destination"  # Paths by their destination site
BY_MESH_SITE = "site"  # Meshes by the sites they list
BY_ENFORCING_SITE = "site"  # Policies by the site that enforces them ("ns/*": every site)
BY_PEER = "peer"  # Sites by the sites they list in mesh.peerWith
BY_OVERLAY_ADDRESS = "overlay"  # Sites by status.overlayAddress
BY_PATH = "path"  # Policies by the Paths they name (primary and backup)
BY_CHILD_OF = "site"  # operator-made children by the Site label
ALL_SITES = "*"
SITE_LABEL = "sdwan.patronus.dev/site"
MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=patronus-operator"


def _ns(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


def ref(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _spec(obj: Object) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def path_source(obj: Object) -> list[str]:
    site = (_spec(obj).get("source") or {}).get("siteRef")
    return [ref(_ns(obj), site)] if site else []


def path_destination(obj: Object) -> list[str]:
    site = (_spec(obj).get("destination") or {}).get("siteRef")
    return [ref(_ns(obj), site)] if site else []


def mesh_sites(obj: Object) -> list[str]:
    return [ref(_ns(obj), site) for site in _spec(obj).get("sites") or [] if isinstance(site, str)]


def policy_sites(obj: Object) -> list[str]:
    """The sites that enforce a policy: those its paths start at, or every site when it names no path."""
    action = _spec(obj).get("action") or {}
    sites = {
        str(site) for key in ("primaryPath", "backupPath") if (site := (action.get(key) or {}).get("siteRef"))
    }
    return [ref(_ns(obj), site) for site in sorted(sites)] if sites else [ref(_ns(obj), ALL_SITES)]


def policy_paths(obj: Object) -> list[str]:
    action = _spec(obj).get("action") or {}
    names = {
        str(path) for key in ("primaryPath", "backupPath") if (path := (action.get(key) or {}).get("pathId"))
    }
    return [ref(_ns(obj), name) for name in sorted(names)]


def site_peers(obj: Object) -> list[str]:
    mesh = _spec(obj).get("mesh") or {}
    return [ref(_ns(obj), peer) for peer in mesh.get("peerWith") or [] if isinstance(peer, str)]


def site_overlay_address(obj: Object) -> list[str]:
    status = obj.get("status")
    address = status.get("overlayAddress") if isinstance(status, dict) else None
    return [ref(_ns(obj), address)] if isinstance(address, str) and address else []


def child_site(obj: Object) -> list[str]:
    site = (obj.get("metadata", {}).get("labels") or {}).get(SITE_LABEL)
    return [ref(_ns(obj), site)] if site else []


def keys_from_refs(refs: list[str]) -> list[ObjectKey]:
    keys = []
    for value in refs:
        namespace, _, name = value.partition("/")
        if name != ALL_SITES:
            keys.append(ObjectKey(namespace, name))
    return keys
