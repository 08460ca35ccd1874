"""etcd's HTTP gateway, for the launcher's health check and for tests that compact the history."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return b'"true"' in response.read()
    except (urllib.error.URLError, OSError):
        return False


def post(url: str, path: str, body: dict[str, object]) -> dict[str, dict[str, str]]:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, dict[str, str]] = json.loads(response.read())
        return result
