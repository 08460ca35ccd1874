"""The data children of a Site: the generated key's Secret and the agent's ConfigMap. Pure.

The ConfigMap also carries, as annotations, the digest of the configuration it holds and the site's
overlay address. The address is the operator's allocation: only the operator writes this object (the
agent may only read it), so peers' configurations and collision checks read the address from here,
never from the Site's status, which the agent can write.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from patronus.operator.site.children.names import (
    CONFIG_DIGEST_ANNOTATION,
    OVERLAY_ADDRESS_ANNOTATION,
    child_metadata,
    child_names,
    site_identity,
)
from patronus.wireguard.keys import keys_match

CONFIG_KEY = "config.json"
PRIVATE_KEY = "privateKey"
PUBLIC_KEY = "publicKey"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def key_secret(site_obj: Mapping[str, Any], private_key: str, public_key: str) -> dict[str, Any]:
    """The Secret holding a key pair the operator generated.

    ``data`` rather than ``stringData``: the API server folds stringData into data, so a manifest with
    stringData never equals the stored object and would be applied on every reconcile.
    """
    if not keys_match(private_key, public_key):
        raise ValueError("the WireGuard public key does not belong to the private key")
    site_name, _ = site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(site_obj, child_names(site_name).secret),
        "type": "Opaque",
        "data": {PRIVATE_KEY: _b64(private_key), PUBLIC_KEY: _b64(public_key)},
    }


def agent_config_map(
    site_obj: Mapping[str, Any], config_json: str, digest: str, *, overlay_address: str | None = None
) -> dict[str, Any]:
    """The agent's rendered configuration, its digest and the site's overlay address."""
    site_name, _ = site_identity(site_obj)
    annotations = {CONFIG_DIGEST_ANNOTATION: digest}
    if overlay_address:
        annotations[OVERLAY_ADDRESS_ANNOTATION] = overlay_address
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(site_obj, child_names(site_name).config_map, annotations),
        "data": {CONFIG_KEY: config_json},
    }
