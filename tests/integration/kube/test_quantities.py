"""Our canonical quantity spelling is the one the real API server stores."""

from __future__ import annotations

import json

from patronus.api.parsers import canonical_quantity
from patronus.controlplane.launcher import ControlPlane

# What users write for CPU, memory and storage, and the spellings the rules have corner cases for.
SPELLINGS = [
    "1000m", "2048Mi", "0.5", "1500", "2000", "1", "2Gi", "1536Mi", "500m", "0.5Gi", "512Mi", "1.5",
    "1e3", "1.5e3", "10Gi", "0", "1Ki", "1023", "2k", "1.5k", "250m", "0.1", "12345678901234", "1E6",
    "1.25Gi", "3000Mi", "0.25Ki", "100m", "1048576Ki", "7e-3", "4.5M",
]  # fmt: skip


def test_canonical_quantities_match_what_the_api_server_stores(
    control_plane: ControlPlane, namespace: str
) -> None:
    # A ResourceQuota stores any quantity in spec.hard and has no side effects.
    hard = {f"requests.example.com/q{index}": text for index, text in enumerate(SPELLINGS)}
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "spellings", "namespace": namespace},
        "spec": {"hard": hard},
    }
    control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(quota))
    stored = json.loads(
        control_plane.kubectl("get", "resourcequota", "spellings", "-n", namespace, "-o", "json").stdout
    )["spec"]["hard"]
    ours = {key: canonical_quantity(text) for key, text in hard.items()}
    mismatched = {hard[k]: (ours[k], stored[k]) for k in hard if ours[k] != stored[k]}
    assert mismatched == {}, "spelling: (ours, the API server's)"
