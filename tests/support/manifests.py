"""Reading the YAML objects of the contract README and of examples/, for tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SEED_README = REPO / "docs" / "seed-operator-README.md"
EXAMPLES = REPO / "examples"

# Real keys (X25519, base64) that stand in for the README's placeholders.
REAL_KEY = "K6uSA8RBK4jdVwrDas/kO9Dhh+Gx/XA+1XGahbrl7zs="

_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
_ALTERNATIVES = re.compile(r"^(\s*[A-Za-z]+: )([A-Za-z-]+)( \| [A-Za-z| -]+)$", re.MULTILINE)


def seed_objects() -> list[dict[str, Any]]:
    """Every sdwan.patronus.dev object in the README, status removed, placeholders made concrete.

    The README writes enums as ``a | b`` (we take the first), a key as "base64-encoded-key" and as
    ``$(wg genkey | wg pubkey)`` (we put a real key), and wraps Quick Start objects in a heredoc.
    """
    objects = []
    for block in _BLOCK.findall(SEED_README.read_text()):
        text = "\n".join(line for line in block.splitlines() if not line.startswith(("kubectl ", "EOF")))
        text = text.replace('"base64-encoded-key"', f'"{REAL_KEY}"').replace(
            "$(wg genkey | wg pubkey)", REAL_KEY
        )
        text = _ALTERNATIVES.sub(r"\1\2", text)
        for document in yaml.safe_load_all(text):
            if isinstance(document, dict) and str(document.get("apiVersion", "")).startswith(
                "sdwan.patronus.dev/"
            ):
                document.pop("status", None)
                objects.append(document)
    return objects


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yaml"))


def example_objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
