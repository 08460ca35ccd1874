"""How the controllers are wired: caches and indexes (``caches``), which changes concern which objects
(``mappers``, ``filters``), and :func:`register`, which puts it together on a manager."""

from patronus.operator.wiring.register import register

__all__ = ["register"]
