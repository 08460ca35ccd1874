"""A Site's key material: which public key peers use, and where its agent finds the private key.

Three kinds of site, by what ``spec.wireguard`` gives:
- no publicKey: the operator generates an X25519 key pair and keeps it in a Secret it owns;
- publicKey + privateKeySecretRef: the key comes from the user's Secret (a mismatch is a condition);
- publicKey alone: the site is external; its agent runs elsewhere and holds its own private key.

The public key peers are told always comes from the spec or from the operator's own Secret, never from
a status the agent can write. The private key is read and written only as Secret data; it is never
logged, put in an Event, a ConfigMap or a status, and never in an exception message (nor a ``repr``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from patronus.api.parsers import parse_wireguard_key
from patronus.api.site import Site
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import SECRET
from patronus.operator.context import Context
from patronus.operator.reconcile.conditions import Cond
from patronus.operator.site.children.data import PRIVATE_KEY, PUBLIC_KEY
from patronus.operator.site.children.names import child_names
from patronus.runtime.logs import get_logger
from patronus.wireguard.keys import generate_private_key, keys_match, public_key_for

log = get_logger(__name__)

KEYS_READY = "KeysReady"


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """What a reconcile needs to know about a site's keys."""

    condition: Cond
    """KeysReady, and why."""
    public_key: str | None
    """The public key peers use (None only when it cannot be known)."""
    secret_name: str | None
    """The Secret the agent reads its private key from; None for an external site."""
    generated: tuple[str, str] | None = field(default=None, repr=False)
    """(private, public) when the operator made the pair: the ``{site}-wireguard`` Secret holds it."""

    @property
    def ready(self) -> bool:
        return self.condition.status == "True"


def _decode(data: Mapping[str, str], key: str) -> str | None:
    try:
        return base64.b64decode(data[key]).decode().strip()
    except (KeyError, binascii.Error, UnicodeDecodeError):
        return None


def key_pair(secret: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The (private, public) pair in one of our key Secrets, or None if absent or inconsistent."""
    data = (secret or {}).get("data") or {}
    private, public = _decode(data, PRIVATE_KEY), _decode(data, PUBLIC_KEY)
    if private is not None and public is not None and keys_match(private, public):
        return private, public
    return None


def generated_public_key(secret: Mapping[str, Any] | None) -> str | None:
    """The public half of an operator-made key Secret, for peers (the private half is not read)."""
    public = _decode((secret or {}).get("data") or {}, PUBLIC_KEY)
    if public is None:
        return None
    try:
        parse_wireguard_key(public)
    except ValueError:
        return None
    return public


def public_key_of(site: Site, key_secret: Mapping[str, Any] | None) -> str | None:
    """The public key peers use for ``site``: its spec's, else the one in its operator-made Secret."""
    return site.spec.wireguard.public_key or generated_public_key(key_secret)


async def resolve_keys(ctx: Context, obj: Mapping[str, Any], site: Site) -> KeyMaterial:
    """The site's key material, generating a pair when the site needs one and none is stored."""
    wireguard = site.spec.wireguard
    if wireguard.public_key is None:
        return await _generated(ctx, obj)
    if wireguard.private_key_secret_ref is None:
        message = "the site's agent runs outside the cluster and holds its own private key"
        return KeyMaterial(Cond(KEYS_READY, "True", "ExternalSite", message), wireguard.public_key, None)
    return await _from_user_secret(ctx, obj, site)


async def _generated(ctx: Context, obj: Mapping[str, Any]) -> KeyMaterial:
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    secret_name = child_names(name).secret
    pair = key_pair(ctx.caches.child(SECRET).get(namespace, secret_name))
    if pair is None:
        # The cache may lag our own write; never replace a key that exists because of it.
        with contextlib.suppress(NotFoundError):
            pair = key_pair(await ctx.client.get(SECRET, namespace, secret_name))
    if pair is None:
        private = generate_private_key()
        pair = (private, public_key_for(private))
        log.info("generated a WireGuard key pair", site=name, public_key=pair[1])
    return KeyMaterial(Cond(KEYS_READY, "True", "KeyGenerated"), pair[1], secret_name, pair)


async def _from_user_secret(ctx: Context, obj: Mapping[str, Any], site: Site) -> KeyMaterial:
    wireguard = site.spec.wireguard
    ref = wireguard.private_key_secret_ref
    assert ref is not None
    assert wireguard.public_key is not None
    namespace = obj["metadata"]["namespace"]
    public = wireguard.public_key
    try:
        secret = await ctx.client.get(SECRET, namespace, ref.name)
    except NotFoundError:
        message = f"wireguard.privateKeySecretRef: Secret {ref.name} not found"
        return KeyMaterial(Cond(KEYS_READY, "False", "SecretNotFound", message), public, ref.name)
    private = _decode(secret.get("data") or {}, ref.key)
    if private is None:
        message = f"Secret {ref.name} has no key {ref.key}"
        return KeyMaterial(Cond(KEYS_READY, "False", "SecretKeyMissing", message), public, ref.name)
    if not keys_match(private, public):
        message = f"the private key in Secret {ref.name} does not belong to wireguard.publicKey"
        return KeyMaterial(Cond(KEYS_READY, "False", "KeyMismatch", message), public, ref.name)
    return KeyMaterial(Cond(KEYS_READY, "True", "KeyFromSecret"), public, ref.name)
