"""An operator process for the runtime tests: the real `patronus operator run` wiring, one test controller.

The controller annotates each ConfigMap in the watched namespace with the identity of the process that
reconciled it, so a test can see which replica does the work. Run as
``python -m tests.integration.runtime.operator_app`` with the operator's environment variables.
"""

from __future__ import annotations

import asyncio
import sys

from patronus.kube.resource import CONFIG_MAP, ObjectKey
from patronus.operator.config import OperatorConfig
from patronus.operator.main import run_operator
from patronus.runtime.controller import Result
from patronus.runtime.manager import Manager
from patronus.runtime.sources import KindCache

ANNOTATION = "test.patronus.dev/reconciled-by"


class Annotator:
    def __init__(self, manager: Manager, cache: KindCache, identity: str) -> None:
        self.manager = manager
        self.cache = cache
        self.identity = identity

    async def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.cache.get(key.namespace, key.name)
        if obj is None or obj["metadata"].get("annotations", {}).get(ANNOTATION) == self.identity:
            return None  # gone, or already ours: nothing to write
        await self.manager.client.patch_merge(
            CONFIG_MAP, key.namespace, key.name, {"metadata": {"annotations": {ANNOTATION: self.identity}}}
        )
        return None


def register(manager: Manager, config: OperatorConfig) -> None:
    cache = manager.cache(CONFIG_MAP)
    manager.controller("annotator", Annotator(manager, cache, config.identity), CONFIG_MAP)


if __name__ == "__main__":
    sys.exit(asyncio.run(run_operator(register=register)))
