"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and optionally kube-controller-manager.

Built from upstream sources by ``scripts/build-controlplane.sh``; started here with throwaway PKI, free
ports and a temporary directory, all of which ``stop()`` removes again::

    with ControlPlane(controller_manager=True) as cp:
        print(cp.kubeconfig)          # the admin kubeconfig, for kubectl and the operator

Every run lives under ``/tmp/patronus-controlplane/<pid>-<random>``; a run whose process was killed
before it could clean up is swept away by the next run.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml

from patronus.controlplane import processes
from patronus.controlplane.certs import PkiFiles, make_pki

RUNS_ROOT = Path(tempfile.gettempdir()) / "patronus-controlplane"
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
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, found or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Binaries:
    """Where the built etcd, kube-apiserver, kube-controller-manager and kubectl are."""

    directory: Path

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.directory / "kube-controller-manager"

    @property
    def kubectl(self) -> Path:
        return self.directory / "kubectl"

    def missing(self) -> list[str]:
        wanted = (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kubectl)
        return [path.name for path in wanted if not os.access(path, os.X_OK)]

    @classmethod
    def locate(cls, *, build: bool = True) -> Binaries:
        """Find the binaries: ``$PATRONUS_CONTROLPLANE_DIR``, else build (or reuse) them from the checkout."""
        configured = os.environ.get("PATRONUS_CONTROLPLANE_DIR")
        if configured:
            binaries = cls(Path(configured))
            if missing := binaries.missing():
                raise ControlPlaneError(f"PATRONUS_CONTROLPLANE_DIR={configured} lacks {', '.join(missing)}")
            return binaries
        script = source_root() / "scripts" / "build-controlplane.sh"
        if not script.exists():
            raise ControlPlaneError(
                "set PATRONUS_CONTROLPLANE_DIR to a directory with etcd, kube-apiserver, "
                "kube-controller-manager and kubectl (scripts/build-controlplane.sh builds them)"
            )
        if not build:
            raise ControlPlaneError(f"control plane not located; run {script}")
        # The script is a no-op when the cache is current; progress of a cold build goes to stderr.
        result = subprocess.run(["bash", str(script)], check=False, stdout=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise ControlPlaneError(f"{script} failed with exit code {result.returncode}")
        binaries = cls(Path(result.stdout.strip().splitlines()[-1]))
        if missing := binaries.missing():
            raise ControlPlaneError(f"{script} did not produce {', '.join(missing)}")
        return binaries


def source_root() -> Path:
    """The repository root when running from a checkout (src layout, editable install)."""
    return Path(__file__).resolve().parents[3]


def sweep_abandoned_runs() -> list[Path]:
    """Remove run directories whose owning process no longer exists (it was killed before cleaning up)."""
    removed: list[Path] = []
    if not RUNS_ROOT.is_dir():
        return removed
    for run in RUNS_ROOT.iterdir():
        pid_text = run.name.split("-", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            shutil.rmtree(run, ignore_errors=True)
            removed.append(run)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) bound to 127.0.0.1 on free ports."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        controller_manager: bool = False,
        startup_timeout: float = 90.0,
        tie_to_parent: bool = True,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        """``extra_apiserver_args`` are appended to kube-apiserver's flags (``--watch-cache=false``, say)."""
        self.binaries = binaries or Binaries.locate()
        self.with_controller_manager = controller_manager
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
        return f"https://127.0.0.1:{self.apiserver_port}"

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
        return [process for process in running if process is not None]

    def start(self) -> ControlPlane:
        sweep_abandoned_runs()
        RUNS_ROOT.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=RUNS_ROOT))
        atexit.register(self.stop)
        try:
            self._pki = make_pki(self._dir / "pki", ADMIN_USER)
            self._start_etcd()
            self.start_apiserver()
            self._write_kubeconfig()
            self._wait_for(self._default_namespace_exists, "the default namespace", self._apiserver_log)
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process and remove the run directory; safe to call twice."""
        for process in (self._controller_manager, self._apiserver, self._etcd):
            if process is not None:
                processes.stop(process)
        self._controller_manager = self._apiserver = self._etcd = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        atexit.unregister(self.stop)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone (etcd keeps the data), to test clients that must ride out an outage."""
        if self._apiserver is not None:
            processes.stop(self._apiserver)
            self._apiserver = None

    def start_apiserver(self) -> None:
        """Start (or restart) kube-apiserver on its port and wait until /readyz says ok."""
        if not self.apiserver_port:
            self.apiserver_port = processes.free_port()
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
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self._dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--profiling=false",
            "--v=0",
            *self.extra_apiserver_args,
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
                f"--controllers={','.join(CONTROLLER_MANAGER_CONTROLLERS)}",
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

    def _write_kubeconfig(self) -> None:
        pki = self._pki_files

        def encoded(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "patronus",
                    "cluster": {"server": self.url, "certificate-authority-data": encoded(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": ADMIN_USER,
                    "user": {
                        "client-certificate-data": encoded(pki.admin_cert),
                        "client-key-data": encoded(pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "patronus", "context": {"cluster": "patronus", "user": ADMIN_USER}}],
            "current-context": "patronus",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _ssl_context(self, verify: bool = True) -> ssl.SSLContext:
        pki = self._pki_files
        if verify:
            context = ssl.create_default_context(cafile=str(pki.ca_cert))
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    def _get(self, path: str, *, port: int | None = None, verify: bool = True) -> int:
        url = f"https://127.0.0.1:{port or self.apiserver_port}{path}"
        try:
            with urllib.request.urlopen(url, context=self._ssl_context(verify), timeout=5) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError):
            return 0

    def _default_namespace_exists(self) -> bool:
        return self._get("/api/v1/namespaces/default") == 200

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                return b'"true"' in response.read()
        except (urllib.error.URLError, OSError):
            return False

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, dict[str, str]]:
        import json  # noqa: PLC0415

        request = urllib.request.Request(
            f"{self.etcd_url}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            result: dict[str, dict[str, str]] = json.loads(response.read())
            return result

    def _wait_for(
        self,
        ready: Callable[[], bool],
        what: str,
        log: Path,
        *,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ControlPlaneError(
                    f"{what}: the process exited with code {process.returncode}; last lines of {log.name}:\n"
                    f"{_tail(log)}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ControlPlaneError(
            f"timed out after {self.startup_timeout:.0f}s waiting for {what}; "
            f"last lines of {log.name}:\n{_tail(log)}"
        )
