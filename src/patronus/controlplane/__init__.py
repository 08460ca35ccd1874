"""A real Kubernetes control plane on this machine, built from upstream sources.

``patronus dev up``, the lab and the integration tests all start it through :class:`ControlPlane`:
etcd, kube-apiserver and (optionally) kube-controller-manager with throwaway PKI and free ports.
"""

from patronus.controlplane.launcher import Binaries, ControlPlane, ControlPlaneError

__all__ = ["Binaries", "ControlPlane", "ControlPlaneError"]
