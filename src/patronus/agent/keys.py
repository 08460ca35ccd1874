"""Where the agent's private key comes from: a mounted file, or the site's key Secret through the API.

The key is held in memory and handed to WireGuard on stdin; it is never logged or written elsewhere.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from patronus.kube.resource import SECRET
from patronus.kube.rest import RestClient


class KeyUnavailable(RuntimeError):
    """No usable private key yet (the operator may not have generated it)."""


def key_from_file(path: Path) -> str:
    text = path.read_text().strip()
    if not text:
        raise KeyUnavailable(f"{path} is empty")
    return text


async def key_from_secret(rest: RestClient, namespace: str, name: str, field: str = "privateKey") -> str:
    secret = await rest.get(SECRET, namespace, name)
    try:
        return base64.b64decode((secret.get("data") or {})[field]).decode().strip()
    except (KeyError, binascii.Error, UnicodeDecodeError) as error:
        raise KeyUnavailable(f"Secret {namespace}/{name} has no usable {field}") from error
