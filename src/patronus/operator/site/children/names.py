"""Names, labels, owner reference and metadata shared by every child of a Site. Pure.

Each child is named ``{site}-{suffix}`` (the suffixes are in ``site.kinds.CHILD_KINDS``). Every child
name is a DNS-1123 label (at most 63 characters, no dots) and the Service's also starts with a letter
(DNS-1035); a site name that does not fit is shortened and given a hash of the full name, so two sites
never share a child. The agent is told these names (it never recomputes them).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from patronus.api.meta import API_GROUP, GROUP_VERSION
from patronus.operator.site.kinds import CHILD_KINDS

SITE_LABEL = f"{API_GROUP}/site"
CONFIG_DIGEST_ANNOTATION = f"{API_GROUP}/config-digest"
OVERLAY_ADDRESS_ANNOTATION = f"{API_GROUP}/overlay-address"

AGENT_NAME = "patronus-agent"
COMPONENT = "sdwan-core"
MANAGED_BY = "patronus-operator"

MAX_NAME_LENGTH = 63
_HASH_LENGTH = 10
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class ChildNames:
    """The names of every child of one Site, all in the Site's namespace."""

    secret: str
    config_map: str
    service_account: str
    role: str
    role_binding: str
    deployment: str
    pvc: str
    service: str
    lease: str

    def by_kind(self) -> dict[str, str]:
        """Each child's name by its kind."""
        return {child.resource.kind: getattr(self, child.field) for child in CHILD_KINDS}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


def _child_name(site_name: str, suffix: str, *, dns1035: bool = False) -> str:
    """``{site}-{suffix}``, or a shortened, hashed form when that is not a valid label of <= 63 chars.

    The hash covers the full site name, so sites that share a long prefix (or differ only by a dot) still
    get distinct children; the suffix stays last so a person can still tell what the object is.
    """
    name = f"{site_name}-{suffix}"
    pattern = _DNS_1035_LABEL if dns1035 else _DNS_LABEL
    if len(name) <= MAX_NAME_LENGTH and pattern.fullmatch(name):
        return name
    base = re.sub(r"[^a-z0-9-]", "-", site_name)
    if dns1035 and not base[:1].isalpha():
        base = f"s-{base}"
    room = MAX_NAME_LENGTH - len(suffix) - _HASH_LENGTH - 2
    return f"{base[:room].rstrip('-')}-{_hash(site_name)}-{suffix}"


@functools.lru_cache(maxsize=16384)
def child_names(site_name: str) -> ChildNames:
    """Every child's name, so the controller can look children up without building them (memoised:
    a reconcile looks up every peer's children)."""
    names = {
        child.field: _child_name(site_name, child.suffix, dns1035=child.dns1035) for child in CHILD_KINDS
    }
    return ChildNames(**names)


def site_label_value(site_name: str) -> str:
    """The site name as a label value: label values stop at 63 characters, Site names at 253."""
    if len(site_name) <= MAX_NAME_LENGTH:
        return site_name
    room = MAX_NAME_LENGTH - _HASH_LENGTH - 1
    return f"{site_name[:room].rstrip('-.')}-{_hash(site_name)}"


def child_labels(site_name: str) -> dict[str, str]:
    """The labels on every child (and the agent's pods); ``SITE_LABEL`` finds all children of a site."""
    value = site_label_value(site_name)
    return {
        "app.kubernetes.io/name": AGENT_NAME,
        "app.kubernetes.io/instance": value,
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SITE_LABEL: value,
    }


def pod_selector(site_name: str) -> dict[str, str]:
    """The pod selector: only labels that never change, since a Deployment's selector is immutable."""
    labels = child_labels(site_name)
    return {key: labels[key] for key in ("app.kubernetes.io/instance", "app.kubernetes.io/name")}


def site_identity(site_obj: Mapping[str, Any]) -> tuple[str, str]:
    """The Site's name and namespace; children live next to it, so both must be known."""
    metadata = site_obj.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not name or not namespace:
        raise ValueError("the Site object needs metadata.name and metadata.namespace")
    return str(name), str(namespace)


def owner_reference(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """A controller reference to the Site: deleting the Site garbage-collects every child."""
    name, _ = site_identity(site_obj)
    uid = (site_obj.get("metadata") or {}).get("uid")
    if not uid:
        raise ValueError(f"Site {name} has no metadata.uid; build children only from stored objects")
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Site",
        "name": name,
        "uid": str(uid),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    site_obj: Mapping[str, Any], name: str, annotations: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Child metadata: name, the Site's namespace, child labels, owner reference, optional annotations."""
    site_name, namespace = site_identity(site_obj)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": child_labels(site_name),
        "ownerReferences": [owner_reference(site_obj)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata
