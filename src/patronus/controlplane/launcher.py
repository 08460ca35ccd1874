"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and optionally kube-controller-manager,
and on request a node that runs pods (:mod:`patronus.controlplane.node`).

Built from upstream sources by ``scripts/build-controlplane.sh``; started here with throwaway PKI, free
ports and a temporary directory, all of which ``stop()`` removes again::

    with ControlPlane(controller_manager=True) as cp:
        print(cp.kubeconfig)          # the admin kubeconfig, for kubectl and the operator

    with ControlPlane(node=True) as cp:   # root: the API server binds to the node's link, not loopback
        cp.kubectl("run", "x", "--image=patronus-agent:latest", "--image-pull-policy=Never")

Every run lives under ``/tmp/patronus-controlplane/<pid>-<random>``; a run whose process was killed
before it could clean up is swept away by the next run.
"""

from __future__ import annotations

import atexit
import base64
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import yaml

from patronus.controlplane import etcd, processes
from patronus.controlplane.binaries import Binaries, ControlPlaneError
from patronus.controlplane.certs import PkiFiles, issue_client_cert, make_pki
from patronus.controlplane.images import ImageSet
from patronus.controlplane.kubeconfig import embedded_kubeconfig
from patronus.controlplane.node import Node, node_lock_timeout_s, remove_tree
from patronus.controlplane.readiness import admin_tls, https_status, wait_until
from patronus.controlplane.runs import RUNS_ROOT, sweep_abandoned_runs

ADMIN_USER = "patronus-admin"
CONTROLLER_MANAGER_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "deployment-controller",
    "replicaset-controller",
    # PVCs carry the pvc-protection finalizer; without this controller their namespaces never finish deleting.
    "persistentvolumeclaim-protection-controller",
)
# What pods on a node need beyond that: Service endpoints, the kube-root-ca.crt ConfigMap, the not-ready
# taint lifted, the aggregated view/edit roles, and pods of deleted nodes collected.
NODE_CONTROLLERS = (
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "root-ca-certificate-publisher-controller",
    "node-lifecycle-controller",
    "clusterrole-aggregation-controller",
    "pod-garbage-collector-controller",
    "ttl-controller",
)


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) bound to 127.0.0.1 on free ports; with ``node``,
    the API server binds to the node's link instead and a node runs pods (root only)."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        controller_manager: bool = False,
        startup_timeout: float = 90.0,
        tie_to_parent: bool = True,
        extra_apiserver_args: Sequence[str] = (),
        node: bool = False,
        images: ImageSet | None = None,
        node_lock_timeout: float | None = None,
    ) -> None:
        """``extra_apiserver_args`` are appended to kube-apiserver's flags (``--watch-cache=false``, say).
        ``node`` implies the controller manager; ``images`` default to the checkout's (built when stale);
        ``node_lock_timeout`` is how long to wait for another node on this machine to finish (default
        ``$PATRONUS_NODE_LOCK_TIMEOUT`` seconds, else not at all)."""
        self.binaries = binaries or Binaries.locate()
        self.node: Node | None = None
        if node:
            if missing := self.binaries.missing_for_node():
                raise ControlPlaneError(f"{self.binaries.directory} lacks {', '.join(missing)}")
            self.node = Node(
                self.binaries,
                images or ImageSet.locate(),
                lock_path=RUNS_ROOT,
                lock_timeout=node_lock_timeout_s() if node_lock_timeout is None else node_lock_timeout,
                startup_timeout=startup_timeout,
                tie_to_parent=tie_to_parent,
            )
        self.network = self.node.network if self.node else None
        self.bind_address = self.network.host_address if self.network else "127.0.0.1"
        self.with_controller_manager = controller_manager or node
        self.startup_timeout = startup_timeout
        self.tie_to_parent = tie_to_parent
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.workdir: Path | None = None
        self.etcd_port = 0
        self.apiserver_port = 0
        self.controller_manager_port = 0
        self._pki: PkiFiles | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._controller_manager: subprocess.Popen[bytes] | None = None

    # -- public surface ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://{self.bind_address}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def kubeconfig(self) -> Path:
        return self._dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self._dir / "logs"

    def processes(self) -> list[subprocess.Popen[bytes]]:
        running = (self._etcd, self._apiserver, self._controller_manager)
        node = self.node.processes() if self.node else []
        return [process for process in running if process is not None] + node

    def start(self) -> ControlPlane:
        sweep_abandoned_runs()
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=RUNS_ROOT))
        atexit.register(self.stop)
        try:
            if self.node is not None:
                self.node.prepare()
            serving_ips = [self.bind_address, self.network.service_ip] if self.network else []
            self._pki = make_pki(self._dir / "pki", ADMIN_USER, serving_ips=serving_ips)
            self._start_etcd()
            self.start_apiserver()
            self._write_kubeconfig()
            self._wait_for(self._default_namespace_exists, "the default namespace", self._apiserver_log)
            if self.with_controller_manager:
                self._start_controller_manager()
            if self.node is not None:
                self.kubectl(
                    "create",
                    "clusterrolebinding",
                    "patronus-nodes",
                    "--clusterrole=system:node",
                    "--group=system:nodes",
                )
                self.node.start(self._dir / "node", self.url, self._pki_files, self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process (the node's first) and remove the run directory; safe to call twice."""
        try:
            if self.node is not None:
                self.node.stop()
        finally:
            # With a node (a routable advertise address) kube-apiserver lingers for seconds after removing
            # its endpoint lease; its data is thrown away, so it gets little time before SIGKILL.
            apiserver_grace = 2.0 if self.node is not None else 10.0
            for process, grace in (
                (self._controller_manager, 10.0),
                (self._apiserver, apiserver_grace),
                (self._etcd, 10.0),
            ):
                if process is not None:
                    processes.stop(process, timeout=grace)
            self._controller_manager = self._apiserver = self._etcd = None
            if self.workdir is not None:
                remove_tree(self.workdir)
                self.workdir = None
            if self.node is not None:
                self.node.release()
        atexit.unregister(self.stop)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps the data), to test clients that must ride out an outage."""
        if self._apiserver is not None:
            processes.stop(self._apiserver)
            self._apiserver = None

    def start_apiserver(self) -> None:
        """Start (or restart) kube-apiserver on its port and wait until /readyz says ok."""
        if not self.apiserver_port:
            self.apiserver_port = processes.free_port(self.bind_address)
        self._apiserver = processes.spawn(
            [self.binaries.kube_apiserver, *self._apiserver_args()],
            self._apiserver_log,
            tie_to_parent=self.tie_to_parent,
        )
        self._wait_for(
            lambda: self._get("/readyz") == 200,
            "kube-apiserver /readyz",
            self._apiserver_log,
            process=self._apiserver,
        )

    def kubectl(
        self, *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl against this control plane."""
        return subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
            input=input_text,
            timeout=120,
        )

    def compact_etcd(self) -> int:
        """Compact etcd at its current revision (so old watch resourceVersions become 410 Gone)."""
        revision = int(
            self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
        )
        self._etcd_post("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self.workdir is None:
            raise ControlPlaneError("the control plane is not running")
        return self.workdir

    @property
    def _apiserver_log(self) -> Path:
        return self.log_dir / "kube-apiserver.log"

    @property
    def _pki_files(self) -> PkiFiles:
        if self._pki is None:
            raise ControlPlaneError("the control plane is not running")
        return self._pki

    def _start_etcd(self) -> None:
        log = self.log_dir / "etcd.log"
        self.etcd_port = processes.free_port()
        peer = f"http://127.0.0.1:{processes.free_port()}"
        data = self._dir / "etcd"
        data.mkdir(mode=0o700)
        self._etcd = processes.spawn(
            [
                self.binaries.etcd,
                "--name=default",
                f"--data-dir={data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            log,
            tie_to_parent=self.tie_to_parent,
        )
        self._wait_for(self._etcd_healthy, "etcd /health", log, process=self._etcd)

    def _apiserver_args(self) -> list[str]:
        pki = self._pki_files
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={self.apiserver_port}",
            f"--bind-address={self.bind_address}",
            f"--advertise-address={self.bind_address}",
            f"--cert-dir={self._dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--profiling=false",
            "--v=0",
            *(self._node_apiserver_args() if self.node else ["--disable-admission-plugins=ServiceAccount"]),
            *self.extra_apiserver_args,
        ]

    def _node_apiserver_args(self) -> list[str]:
        """Pods get service account tokens; logs and exec reach the kubelet with a client certificate."""
        pki_dir = self._dir / "pki"
        user, group = "kube-apiserver-kubelet-client", "system:masters"
        cert, key = issue_client_cert(self._pki_files, pki_dir, "kubelet-client", user, group)
        return [
            f"--kubelet-client-certificate={cert}",
            f"--kubelet-client-key={key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def _start_controller_manager(self) -> None:
        pki = self._pki_files
        log = self.log_dir / "kube-controller-manager.log"
        self.controller_manager_port = processes.free_port()
        self._controller_manager = processes.spawn(
            [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self._dir / 'kcm-certs'}",
                f"--controllers={','.join(self._controllers())}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--v=0",
            ],
            log,
            tie_to_parent=self.tie_to_parent,
        )
        self._wait_for(
            lambda: self._get("/healthz", port=self.controller_manager_port, verify=False) == 200,
            "kube-controller-manager /healthz",
            log,
            process=self._controller_manager,
        )

    def _controllers(self) -> tuple[str, ...]:
        return CONTROLLER_MANAGER_CONTROLLERS + (NODE_CONTROLLERS if self.node else ())

    def _write_kubeconfig(self) -> None:
        config = embedded_kubeconfig(self.url, self._pki_files, ADMIN_USER)
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _get(self, path: str, *, port: int | None = None, verify: bool = True) -> int:
        host = self.bind_address if port is None else "127.0.0.1"
        url = f"https://{host}:{port or self.apiserver_port}{path}"
        return https_status(url, admin_tls(self._pki_files, verify))

    def _default_namespace_exists(self) -> bool:
        return self._get("/api/v1/namespaces/default") == 200

    def _etcd_healthy(self) -> bool:
        return etcd.healthy(self.etcd_url)

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, dict[str, str]]:
        return etcd.post(self.etcd_url, path, body)

    def _wait_for(
        self,
        ready: Callable[[], bool],
        what: str,
        log: Path,
        *,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        wait_until(ready, what, log, timeout=self.startup_timeout, process=process)
