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
from patronus.kube.resource import SECRET, ObjectKey
from patronus.operator.context import Context
from patronus.operator.reconcile.conditions import Cond
from patronus.operator.reconcile.parsed import per_version
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
    fresh: bool = False
    """The pair was made by this process and its Secret is not known to exist: it is created, never
    applied, so that a Secret of that name the cache does not show is never overwritten."""

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


class GeneratedKeys:
    """The pairs this process generated, per site (uid), until the cache shows their Secret.

    A new site's Secret is created, not applied, so there is nothing to read first: if a Secret of that
    name exists that the cache does not show (another replica's write not seen yet, a Secret without the
    site label), the create fails and only then is it read (:func:`adopt_existing_secret`). Once
    created, the pair is kept here until the cache shows it, so the cache lagging our own write needs no
    read either, and the key is never replaced.
    """

    def __init__(self) -> None:
        self._held: dict[ObjectKey, tuple[str, tuple[str, str], bool]] = {}  # (uid, pair, Secret stored)

    def pair(self, obj: Mapping[str, Any]) -> tuple[tuple[str, str], bool] | None:
        """The pair held for this site (a re-created site, with another uid, has none), and whether its
        Secret was written."""
        held = self._held.get(ObjectKey.of(obj))
        return (held[1], held[2]) if held is not None and held[0] == _uid(obj) else None

    def hold(self, obj: Mapping[str, Any], pair: tuple[str, str], *, stored: bool) -> None:
        self._held[ObjectKey.of(obj)] = (_uid(obj), pair, stored)

    def stored(self, obj: Mapping[str, Any]) -> None:
        """The pair's Secret was written."""
        held = self.pair(obj)
        if held is not None:
            self.hold(obj, held[0], stored=True)

    def forget(self, key: ObjectKey) -> None:
        self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)


def _uid(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("uid") or "")


async def resolve_keys(
    ctx: Context, obj: Mapping[str, Any], site: Site, generated: GeneratedKeys
) -> KeyMaterial:
    """The site's key material, generating a pair when the site needs one and none is stored."""
    wireguard = site.spec.wireguard
    if wireguard.public_key is None:
        return _generated(ctx, obj, generated)
    if wireguard.private_key_secret_ref is None:
        message = "the site's agent runs outside the cluster and holds its own private key"
        return KeyMaterial(Cond(KEYS_READY, "True", "ExternalSite", message), wireguard.public_key, None)
    return await _from_user_secret(ctx, obj, site)


def _generated(ctx: Context, obj: Mapping[str, Any], generated: GeneratedKeys) -> KeyMaterial:
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    secret_name = child_names(name).secret
    ready = Cond(KEYS_READY, "True", "KeyGenerated")
    secret = ctx.caches.child(SECRET).get(namespace, secret_name)
    # Checking the pair derives the public key (an X25519 multiplication): once per Secret version.
    pair = per_version("key-pair", secret, key_pair) if secret is not None else None
    if pair is not None:
        generated.forget(ObjectKey.of(obj))
        return KeyMaterial(ready, pair[1], secret_name, pair)
    held = generated.pair(obj)
    if held is None:
        private = generate_private_key()
        held = ((private, public_key_for(private)), False)
        generated.hold(obj, held[0], stored=False)
        log.info("generated a WireGuard key pair", site=name, public_key=held[0][1])
    return KeyMaterial(ready, held[0][1], secret_name, held[0], fresh=not held[1])


async def adopt_existing_secret(ctx: Context, obj: Mapping[str, Any], generated: GeneratedKeys) -> None:
    """Creating the site's key Secret found one of that name: its pair is the site's, if it holds one
    (the cache lagged); else ours replaces it (applied from now on)."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    found = None
    with contextlib.suppress(NotFoundError):
        found = key_pair(await ctx.client.get(SECRET, namespace, child_names(name).secret))
    held = generated.pair(obj)
    pair = found or (held[0] if held is not None else None)
    if pair is not None:
        generated.hold(obj, pair, stored=True)


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
