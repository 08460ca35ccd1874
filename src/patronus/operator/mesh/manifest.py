"""The Path manifest a Mesh applies for one planned Path. Pure.

The Path is owned by the Mesh (a controller reference: deleting the Mesh garbage-collects it) and
labelled with its mesh, source and destination, so people can find a mesh's Paths (names longer than a
label value allows are shortened with a hash, as for a Site's children).
"""

from __future__ import annotations

from typing import Any

from patronus.api.meta import API_GROUP, GROUP_VERSION
from patronus.operator.site.children.names import MANAGED_BY, SITE_LABEL, site_label_value
from patronus.topology import PathPlan

MESH_LABEL = f"{API_GROUP}/mesh"
DESTINATION_LABEL = f"{API_GROUP}/destination"


def path_manifest(mesh_obj: dict[str, Any], plan: PathPlan) -> dict[str, Any]:
    meta = mesh_obj["metadata"]
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Path",
        "metadata": {
            "name": plan.name,
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                MESH_LABEL: site_label_value(plan.mesh),
                SITE_LABEL: site_label_value(plan.source),
                DESTINATION_LABEL: site_label_value(plan.destination),
            },
            "ownerReferences": [
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Mesh",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "source": {"siteRef": plan.source},
            "destination": {"siteRef": plan.destination},
            "type": "vpn",
            "underlay": plan.underlay,
        },
    }
