"""Where the agent's private key comes from: a mounted file, or a named Secret read through the API.

The agent is told which (``--key-file PATH``, or ``--key-secret NAME`` with ``--key-secret-key KEY``); it
never guesses a Secret's name from the site's. The key is held in memory and handed to WireGuard on stdin;
it is never logged or written elsewhere, and errors name the file or Secret, never the key.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path

from patronus.kube.client import KubeClient
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import SECRET

DEFAULT_SECRET_KEY = "privateKey"


class KeyUnavailable(RuntimeError):
    """No usable private key yet (the operator may not have generated it, or the file is empty)."""


@dataclass(frozen=True)
class KeyFile:
    path: Path

    def describe(self) -> str:
        return f"file {self.path}"


@dataclass(frozen=True)
class KeySecret:
    name: str
    key: str = DEFAULT_SECRET_KEY

    def describe(self) -> str:
        return f"Secret {self.name} (key {self.key})"


KeySource = KeyFile | KeySecret


def key_from_file(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise KeyUnavailable(f"cannot read {path}: {error.strerror}") from None
    if not text:
        raise KeyUnavailable(f"{path} is empty")
    return text


async def key_from_secret(client: KubeClient, namespace: str, source: KeySecret) -> str:
    try:
        secret = await client.get(SECRET, namespace, source.name)
    except NotFoundError:
        raise KeyUnavailable(f"Secret {namespace}/{source.name} not found (yet)") from None
    try:
        text = base64.b64decode((secret.get("data") or {})[source.key]).decode().strip()
    except (KeyError, binascii.Error, UnicodeDecodeError):
        raise KeyUnavailable(f"Secret {namespace}/{source.name} has no usable {source.key}") from None
    if not text:
        raise KeyUnavailable(f"Secret {namespace}/{source.name} has an empty {source.key}")
    return text


async def load_key(client: KubeClient, namespace: str, source: KeySource) -> str:
    """The private key from ``source``; :class:`KeyUnavailable` (or a KubeError) when it cannot be had."""
    if isinstance(source, KeyFile):
        return key_from_file(source.path)
    return await key_from_secret(client, namespace, source)
