"""Install the Patronus CRDs into a cluster and wait until the API server serves them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from patronus.api.crd import all_crds
from patronus.kube.client import KubeClient
from patronus.kube.resource import CUSTOM_RESOURCE_DEFINITION

FIELD_MANAGER = "patronus-crds"


class CrdNotEstablishedError(TimeoutError):
    """A CRD was applied but the API server did not report it Established in time."""


async def install_crds(client: KubeClient, timeout: float = 60.0) -> list[str]:
    """Server-side apply every CRD, then wait until each is Established; returns the CRD names."""
    names = []
    for manifest in all_crds():
        await client.apply(manifest, field_manager=FIELD_MANAGER, force=True, kind=CUSTOM_RESOURCE_DEFINITION)
        names.append(manifest["metadata"]["name"])
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            if established(await client.get(CUSTOM_RESOURCE_DEFINITION, None, name)):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise CrdNotEstablishedError(f"CRDs not established after {timeout:.0f}s: {sorted(pending)}")
            await asyncio.sleep(0.1)
    return names


def established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
