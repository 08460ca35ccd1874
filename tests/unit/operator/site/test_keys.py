"""Key material: never the private key in a repr, and the public key peers use from trusted places."""

from __future__ import annotations

from patronus.api import Site
from patronus.operator.reconcile.conditions import Cond
from patronus.operator.site.keys import KeyMaterial, generated_public_key, public_key_of
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.unit.operator.world import secret, site


def test_the_private_key_is_not_in_the_repr() -> None:
    private = generate_private_key()
    material = KeyMaterial(
        Cond("KeysReady", "True", "KeyGenerated"), public_key_for(private), "a", (private, "x")
    )
    assert private not in repr(material)
    assert material.ready


def test_the_public_key_peers_use() -> None:
    public = public_key_for(generate_private_key())
    external = Site.model_validate(
        {
            **site("a", wireguard={"publicKey": public, "endpoints": ["a.example:1"]}),
            "metadata": {"name": "a", "namespace": "ns"},
        }
    )
    generated = Site.model_validate(site("b"))
    stored = secret("b-wireguard", {"publicKey": public, "privateKey": "whatever"})
    assert public_key_of(external, None) == public
    assert public_key_of(generated, stored) == public
    assert public_key_of(generated, None) is None, "not known yet: left out of every peer"
    assert generated_public_key(secret("b-wireguard", {"publicKey": "not a key"})) is None
