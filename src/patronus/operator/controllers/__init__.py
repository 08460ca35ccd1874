"""The Site, Mesh, Path and Policy controllers, and :func:`register` which wires them into a manager."""

from patronus.operator.controllers.wiring import register

__all__ = ["register"]
