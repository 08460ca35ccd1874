"""Install the Patronus CRDs into a cluster and wait until the API server serves them."""

from __future__ import annotations

import time
from typing import cast

from lightkube import Client
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

from patronus.api.crd import all_crds

FIELD_MANAGER = "patronus-crds"


class CrdNotEstablishedError(TimeoutError):
    """A CRD was applied but the API server did not report it Established in time."""


def install_crds(client: Client, timeout: float = 60.0) -> list[str]:
    """Server-side apply every CRD, then wait until each is Established; returns the CRD names."""
    names = []
    for manifest in all_crds():
        crd = cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(manifest))
        client.apply(crd, field_manager=FIELD_MANAGER, force=True)
        names.append(manifest["metadata"]["name"])
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            if _established(client.get(CustomResourceDefinition, name)):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise CrdNotEstablishedError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")
            time.sleep(0.1)
    return names


def _established(crd: CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)
