"""Cache indexes and event mappers: which objects a change to another object concerns.

Index values are ``namespace/name`` so that lookups never cross namespaces. All pure functions of one
cached object.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from patronus.api.addresses import parse_endpoint
from patronus.kube.resource import ObjectKey
from patronus.operator.reconcile.parsed import per_version
from patronus.operator.site.children.data import PUBLIC_KEY
from patronus.operator.site.children.names import (
    MANAGED_BY,
    OVERLAY_ADDRESS_ANNOTATION,
    SITE_LABEL,
    site_label_value,
)
from patronus.runtime.cache import Object
from patronus.topology.addressing import IPNetwork

BY_SOURCE = "source"  # Paths by their source site
BY_DESTINATION = "destination"  # Paths by their destination site
BY_MESH_SITE = "site"  # Meshes by the sites they list
BY_ENFORCING_SITE = "site"  # Policies by the site that enforces them ("ns/*": every site)
BY_PEER = "peer"  # Sites by the sites they list in mesh.peerWith
BY_OVERLAY_ADDRESS = "overlay"  # site ConfigMaps by the overlay address they record
BY_PATH = "path"  # Policies by the Paths they name (primary and backup)
BY_REPORTED_POLICY = "reported-policy"  # Sites by the policies their agent reports on
BY_PUBLIC_KEY = "public-key"  # Sites by spec.wireguard.publicKey; key Secrets by the public key they hold
BY_SUBNET = "subnet"  # Sites by each of their subnets
BY_SUBNET_ANCESTOR = "subnet-ancestor"  # Sites by every prefix strictly holding one of their subnets
BY_ENDPOINT_ANCESTOR = "endpoint-ancestor"  # Sites by every prefix holding one of their endpoint addresses
BY_LABEL_VALUE = "label-value"  # Sites by the value their children's (and key Secrets') site label has
ALL_SITES = "*"


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


def site_public_key(obj: Object) -> list[str]:
    key = (_spec(obj).get("wireguard") or {}).get("publicKey")
    return [ref(_ns(obj), key)] if isinstance(key, str) and key else []


def secret_public_key(obj: Object) -> list[str]:
    """An operator-made key Secret by the public key it holds (decoded; user Secrets hold none)."""
    if (obj.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/managed-by") != MANAGED_BY:
        return []
    try:
        key = base64.b64decode((obj.get("data") or {}).get(PUBLIC_KEY, "")).decode().strip()
    except (ValueError, UnicodeDecodeError):
        return []
    return [ref(_ns(obj), key)] if key else []


def _networks(obj: Object) -> list[IPNetwork]:
    found = []
    for text in _spec(obj).get("subnets") or []:
        try:
            found.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            continue
    return found


def site_subnets(obj: Object) -> list[str]:
    return sorted({ref(_ns(obj), str(network)) for network in _networks(obj)})


def site_subnet_ancestors(obj: Object) -> list[str]:
    return sorted(
        {
            ref(_ns(obj), str(network.supernet(new_prefix=length)))
            for network in _networks(obj)
            for length in range(network.prefixlen)
        }
    )


def site_endpoint_ancestors(obj: Object) -> list[str]:
    found = set()
    for endpoint in (_spec(obj).get("wireguard") or {}).get("endpoints") or []:
        try:
            address = parse_endpoint(str(endpoint)).address()
        except ValueError:
            continue
        if address is not None:
            host = ipaddress.ip_network(address)
            found |= {ref(_ns(obj), str(host.supernet(new_prefix=n))) for n in range(host.prefixlen + 1)}
    return sorted(found)


def site_label_values(obj: Object) -> list[str]:
    """A site by the value of ``sdwan.patronus.dev/site`` that its objects carry (its name, shortened with
    a hash past 63 characters): how a labelled key Secret finds its site."""
    return [ref(_ns(obj), site_label_value(obj["metadata"]["name"]))]


def secret_site_label(obj: Object) -> list[str]:
    """A Secret by the site its ``sdwan.patronus.dev/site`` label names."""
    value = (obj.get("metadata", {}).get("labels") or {}).get(SITE_LABEL)
    return [ref(_ns(obj), value)] if isinstance(value, str) and value else []


def site_reported_policies(obj: Object) -> list[str]:
    """The policies a site's agent reports on in ``status.policies`` (once per site version: the index
    and the mappers ask on every report, and a site may report on hundreds). Do not modify the list."""
    return per_version("reported-policies", obj, _reported_policies)


def _reported_policies(obj: Object) -> list[str]:
    status = obj.get("status")
    reports = status.get("policies") if isinstance(status, dict) else None
    names = {r.get("name") for r in reports or () if isinstance(r, dict)}
    return [ref(_ns(obj), name) for name in sorted(n for n in names if isinstance(n, str) and n)]


def config_map_overlay_address(obj: Object) -> list[str]:
    """A site's ConfigMap by the overlay address the operator allocated (see ``site.addresses``)."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    address = annotations.get(OVERLAY_ADDRESS_ANNOTATION)
    return [ref(_ns(obj), address)] if isinstance(address, str) and address else []


def keys_from_refs(refs: list[str]) -> list[ObjectKey]:
    keys = []
    for value in refs:
        namespace, _, name = value.partition("/")
        if name != ALL_SITES:
            keys.append(ObjectKey(namespace, name))
    return keys
