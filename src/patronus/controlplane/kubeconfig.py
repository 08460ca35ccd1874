"""Kubeconfigs for the control plane's clients: the admin's (certificates embedded, so the file can be
copied anywhere) and the node components' (naming their files, which they read at start)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from patronus.controlplane.certs import PkiFiles


def _config(server: str, cluster: dict[str, str], user: str, credentials: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "patronus", "cluster": {"server": server, **cluster}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "patronus", "context": {"cluster": "patronus", "user": user}}],
        "current-context": "patronus",
    }


def embedded_kubeconfig(server: str, pki: PkiFiles, user: str) -> dict[str, Any]:
    """The admin's kubeconfig, with the CA and the admin's certificate and key inline."""

    def encoded(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return _config(
        server,
        {"certificate-authority-data": encoded(pki.ca_cert)},
        user,
        {"client-certificate-data": encoded(pki.admin_cert), "client-key-data": encoded(pki.admin_key)},
    )


def file_kubeconfig(
    server: str, ca_cert: Path, client_cert: Path, client_key: Path, user: str
) -> dict[str, Any]:
    """A kubeconfig that names its files."""
    return _config(
        server,
        {"certificate-authority": str(ca_cert)},
        user,
        {"client-certificate": str(client_cert), "client-key": str(client_key)},
    )
