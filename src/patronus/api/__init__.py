"""Typed models of the four kinds (Site, Path, Policy, Mesh), their shared parsers, and the CRD generator."""

from patronus.api.mesh import Mesh, MeshSpec, MeshStatus
from patronus.api.meta import API_GROUP, API_VERSION, GROUP_VERSION, ApiModel, Condition, ObjectMeta
from patronus.api.path import Path, PathSpec, PathStatus
from patronus.api.policy import Policy, PolicySpec, PolicyStatus
from patronus.api.site import Site, SiteSpec, SiteStatus

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "GROUP_VERSION",
    "ApiModel",
    "Condition",
    "Mesh",
    "MeshSpec",
    "MeshStatus",
    "ObjectMeta",
    "Path",
    "PathSpec",
    "PathStatus",
    "Policy",
    "PolicySpec",
    "PolicyStatus",
    "Site",
    "SiteSpec",
    "SiteStatus",
]
