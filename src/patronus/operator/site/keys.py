"""A Site's key material: which public key peers use, and where its agent finds the private key.

Three kinds of site, by what ``spec.wireguard`` gives:
- no publicKey: the operator generates an X25519 key pair and keeps it in a Secret it owns;
- publicKey + privateKeySecretRef: the key comes from the user's Secret, which must carry the label
  ``sdwan.patronus.dev/site=<site>`` (a mismatch is a condition);
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
from patronus.operator.site.children.names import SITE_LABEL, child_names, site_label_value
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


def user_secret_usable(secret: Mapping[str, Any] | None, site_name: str) -> bool:
    """The rule for ``privateKeySecretRef``: the Secret carries ``sdwan.patronus.dev/site=<site>``.

    Only someone who may change a Secret can label it, so a site can never borrow another's key (its
    ``<site>-wireguard`` Secret is labelled for that site) or a Secret its owner did not mean for it.
    """
    labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
    return secret is not None and labels.get(SITE_LABEL) == site_label_value(site_name)


def _not_usable(name: str, site_name: str, key: str) -> Cond:
    """One reason and one message whatever failed (no Secret, no label, another site's label, no such
    key), so the condition tells nobody which Secrets or keys exist."""
    message = (
        f"wireguard.privateKeySecretRef: Secret {name} is not usable: it must exist in this namespace, carry "
        f"the label {SITE_LABEL}={site_label_value(site_name)} and hold the private key under {key}"
    )
    return Cond(KEYS_READY, "False", "KeySecretNotUsable", message)


async def _from_user_secret(ctx: Context, obj: Mapping[str, Any], site: Site) -> KeyMaterial:
    """The key in the user's Secret, from the cache, which holds only site-labelled Secrets. A Secret
    that fails the rule is never granted to the agent, mounted, or described."""
    wireguard = site.spec.wireguard
    ref = wireguard.private_key_secret_ref
    assert ref is not None
    assert wireguard.public_key is not None
    namespace, name, public = obj["metadata"]["namespace"], obj["metadata"]["name"], wireguard.public_key
    secret = ctx.caches.child(SECRET).get(namespace, ref.name)
    private = _decode((secret or {}).get("data") or {}, ref.key) if user_secret_usable(secret, name) else None
    if private is None:
        return KeyMaterial(_not_usable(ref.name, name, ref.key), public, None)
    if not keys_match(private, public):
        message = f"the private key in Secret {ref.name} does not belong to wireguard.publicKey"
        return KeyMaterial(Cond(KEYS_READY, "False", "KeyMismatch", message), public, ref.name)
    return KeyMaterial(Cond(KEYS_READY, "True", "KeyFromSecret"), public, ref.name)
