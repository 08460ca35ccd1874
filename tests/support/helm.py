"""The Helm client built by scripts/build-helm.sh, and the chart, for tests.

Helm keeps its repositories, cache and plugins under HELM_*_HOME; every ``Helm`` has homes of its own
(a temporary directory), so tests never read or write the user's ~/.config/helm.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.manifests import REPO

CHART = REPO / "deploy" / "helm" / "patronus-operator"
RENDER_MANIFESTS = REPO / "scripts" / "render-manifests.sh"


@functools.cache
def helm_binary() -> Path:
    """The cached helm (a no-op build when current; `make setup` builds it)."""
    result = subprocess.run(
        [str(REPO / "scripts" / "build-helm.sh")], check=True, capture_output=True, text=True
    )
    return Path(result.stdout.strip().splitlines()[-1]) / "helm"


@dataclass(frozen=True)
class Helm:
    """Runs helm with private homes and, when given, a kubeconfig."""

    home: Path
    kubeconfig: Path | None = None

    @property
    def binary(self) -> Path:
        return helm_binary()

    def env(self) -> dict[str, str]:
        homes = {f"HELM_{kind}_HOME": str(self.home / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")}
        extra = {"KUBECONFIG": str(self.kubeconfig)} if self.kubeconfig else {}
        return {**os.environ, **homes, **extra}

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(helm_binary()), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def schema_refusal(self, setting: str) -> str:
        """Render the chart with ``--set setting``, expect values.schema.json to refuse it; its stderr."""
        result = self.run("template", "x", str(CHART), "--set", setting, check=False)
        assert result.returncode != 0
        assert "values don't meet the specifications of the schema" in result.stderr
        return result.stderr

    def template(
        self,
        *,
        release: str = "patronus-operator",
        namespace: str = "patronus-system",
        values: Mapping[str, Any] | None = None,
        sets: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The chart rendered with these values, as objects (CRDs not included, as in `helm template`)."""
        text = self.template_text(release=release, namespace=namespace, values=values, sets=sets)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def template_text(
        self,
        *,
        release: str = "patronus-operator",
        namespace: str = "patronus-system",
        values: Mapping[str, Any] | None = None,
        sets: Sequence[str] = (),
    ) -> str:
        args = ["template", release, str(CHART), "--namespace", namespace]
        args += self.values_args(values)
        for item in sets:
            args += ["--set", item]
        return self.run(*args).stdout

    def values_args(self, values: Mapping[str, Any] | None) -> list[str]:
        """``--values FILE`` for a mapping of values (written under the homes)."""
        if not values:
            return []
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / f"values-{abs(hash(yaml.safe_dump(dict(values))))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        return ["--values", str(path)]


def by_kind(objects: Sequence[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
