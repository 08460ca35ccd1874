"""The opening every reconciler shares: the object from the cache, its deletion, its parsed spec.

A reconcile is told only a key (level-based). The object may be gone (the reconciler forgets what it
remembered about it; owner references take the children), or its spec may not validate against the
model (the CRD admits some values the model refuses): then the status says ``Ready=False, InvalidSpec``
with the validation message, a Warning Event says it once, and the reconcile goes no further.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.operator.context import Context
from patronus.operator.reconcile.apply import apply_status_if_changed
from patronus.operator.reconcile.conditions import Cond, find, merge
from patronus.operator.reconcile.parsed import parsed_or_error
from patronus.runtime.cache import Object
from patronus.runtime.sources import KindCache

M = TypeVar("M", bound=BaseModel)

INVALID_SPEC = "InvalidSpec"
_MAX_ERRORS = 3


@dataclass(frozen=True, slots=True)
class Opened(Generic[M]):
    """An object worth reconciling: as cached, parsed, and what its status says now."""

    obj: Object
    model: M
    now: datetime

    @property
    def status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}

    @property
    def generation(self) -> int | None:
        generation = self.obj["metadata"].get("generation")
        return int(generation) if generation is not None else None


def invalid_message(error: ValidationError) -> str:
    """The first few validation errors, each with the field it is about."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else str(e["msg"])
        for e in error.errors()[:_MAX_ERRORS]
    )


def invalid_status(
    obj: Object, error: ValidationError, *, now: datetime, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """The whole status of an object whose spec does not validate. Pure."""
    generation = obj["metadata"].get("generation")
    ready = Cond("Ready", "False", INVALID_SPEC, invalid_message(error))
    previous = (obj.get("status") or {}).get("conditions")
    return {
        **extra,
        "observedGeneration": generation,
        "conditions": merge(previous, [ready], now=now, generation=generation),
    }


class Opening(Generic[M]):
    """Reads, parses and, for an invalid spec, reports one kind's objects for its reconciler."""

    def __init__(
        self,
        ctx: Context,
        kind: ResourceKind,
        cache: KindCache,
        model: type[M],
        *,
        forget: Callable[[ObjectKey], None] = lambda _key: None,
        invalid_fields: Mapping[str, Any] | None = None,
    ) -> None:
        """``forget`` drops what the reconciler remembers of a deleted object; ``invalid_fields`` are
        status fields an invalid object gets besides its conditions (a Site's ``phase: Failed``)."""
        self.ctx = ctx
        self.kind = kind
        self.cache = cache
        self.model = model
        self.forget = forget
        self.invalid_fields = dict(invalid_fields or {})

    async def open(self, key: ObjectKey) -> Opened[M] | None:
        """The object to reconcile, or None when it is gone or invalid (both already handled)."""
        obj = self.cache.get(key.namespace, key.name)
        if obj is None:
            self.forget(key)
            return None
        now = self.ctx.now()
        model = parsed_or_error(self.model, obj)
        if isinstance(model, ValidationError):
            await self._report_invalid(obj, model, now)
            return None
        return Opened(obj, model, now)

    async def _report_invalid(self, obj: Object, error: ValidationError, now: datetime) -> None:
        status = invalid_status(obj, error, now=now, extra=self.invalid_fields)
        written = await apply_status_if_changed(self.ctx.client, self.kind, obj, status)
        before = find((obj.get("status") or {}).get("conditions"), "Ready")
        if written is not None and (before is None or before.get("reason") != INVALID_SPEC):
            self.ctx.events.event(obj, "Warning", INVALID_SPEC, invalid_message(error))
