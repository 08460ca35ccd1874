"""A real Kubernetes control plane on this machine, built from upstream sources.

``patronus dev up``, the lab and the integration tests all start it through :class:`ControlPlane`:
etcd, kube-apiserver and (optionally) kube-controller-manager with throwaway PKI and free ports, and
on request a node (containerd, kubelet, kube-proxy, kube-scheduler) that runs pods from the project's images.
"""

from patronus.controlplane.binaries import Binaries, ControlPlaneError
from patronus.controlplane.images import ImageSet
from patronus.controlplane.launcher import ControlPlane

__all__ = ["Binaries", "ControlPlane", "ControlPlaneError", "ImageSet"]
