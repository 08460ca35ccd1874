"""The lab's Prometheus, alerts, Grafana queries and the dashboard, against the real running lab.

One lab (three sites) for the module, started with ``patronus lab up``. Faults are injected the way an
operator meets them (a WAN link cut or lossy with ``impair``, an agent frozen) and every test undoes its
own. The lab's Prometheus evaluates the production rules 30 times faster, so each alert shows within
seconds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patronus.controlplane.launcher import Binaries
from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import LabPlan
from patronus.lab.supervisor import LAB_NAMESPACE, MESH_NAME, LabFiles
from patronus.topology.mesh import path_name
from tests.integration.lab import require_root, unique_prefix
from tests.support.waiting import eventually_sync as eventually
from tests.unit.monitoring.test_rules import dashboard_exprs

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
LAB_GRAFANA = {"$__rate_interval": "30s", "$__interval": "2s", "$__range": "5m", "$site": ".*", "$path": ".*"}


@dataclass
class Lab:
    plan: LabPlan
    files: LabFiles
    ready: dict[str, Any]
    kubectl_binary: str

    @property
    def prometheus(self) -> str:
        return str(self.ready["prometheus"])

    @property
    def dashboard(self) -> str:
        return str(self.ready["dashboard"])

    @property
    def token(self) -> str:
        token_file = self.files.root / "dashboard-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # a bearer token: its owner's only
        return token_file.read_text().strip()

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.prometheus}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/query", query=expr)["result"])

    def alerts(self, name: str) -> list[dict[str, str]]:
        """Labels of the firing alerts named ``name``."""
        return [
            a["labels"]
            for a in self.api("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == "firing"
        ]

    def kubectl(self, *args: str) -> str:
        return subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.files.kubeconfig}", "-n", LAB_NAMESPACE, *args],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip

    def path_states(self) -> dict[str, str]:
        items = json.loads(self.kubectl("get", "paths.sdwan.patronus.dev", "-o", "json"))["items"]
        return {p["metadata"]["name"]: (p.get("status") or {}).get("state", "") for p in items}

    def agent_pid(self, site: str) -> int:
        out = subprocess.run(
            ["ip", "netns", "pids", self.plan.site(site).namespace],
            capture_output=True,
            text=True,
            check=False,
        )
        for pid in (int(word) for word in out.stdout.split()):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"agent" in cmdline and b"run" in cmdline and b"patronus" in cmdline:
                return pid
        raise AssertionError(f"no agent in site {site}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    cache = tmp_path_factory.mktemp("lab-cache")
    binaries = Binaries.locate()
    env = {**os.environ, "PATRONUS_CACHE": str(cache), "PATRONUS_CONTROLPLANE_DIR": str(binaries.directory)}
    prefix = unique_prefix()
    files = LabFiles(cache / "lab" / prefix)
    up = subprocess.run(
        [sys.executable, "-m", "patronus", "lab", "up", "--sites", "3", "--prefix", prefix],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert "Prometheus: http://127.0.0.1:" in up.stderr
        assert "Dashboard: http://127.0.0.1:" in up.stderr
        running = Lab(files.load_plan(), files, json.loads(files.ready.read_text()), str(binaries.kubectl))
        eventually(lambda: set(running.path_states().values()) == {"up"}, timeout=90, what="every path up")
        yield running
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "patronus", "lab", "down", "--prefix", prefix],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
        assert down.returncode == 0, down.stderr[-2000:]
        assert network.namespaces_present(prefix) == []
        assert (
            subprocess.run(["pgrep", "-f", str(files.root)], capture_output=True, check=False).stdout == b""
        )


@pytest.fixture
def clean_links(lab: Lab) -> Iterator[None]:
    yield
    for link in lab.plan.links:
        impair.clear(lab.plan, link)
    # A lossy link leaves the 1000-probe loss window (200 s at the lab's 5 probes a second) only slowly.
    eventually(lambda: set(lab.path_states().values()) == {"up"}, timeout=240, what="every path up again")


def fiber(source: str, destination: str) -> str:
    return path_name(MESH_NAME, source, destination, "fiber")


# -- Prometheus --------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_operator_and_has_a_target_per_agent(lab: Lab) -> None:
    targets = lab.api("/api/v1/targets")["activeTargets"]
    jobs = sorted((t["labels"]["job"], t["labels"].get("site", "")) for t in targets)
    assert jobs == [
        ("patronus-agent", "a"),
        ("patronus-agent", "b"),
        ("patronus-agent", "c"),
        ("patronus-operator", ""),
    ]
    operator = next(t for t in targets if t["labels"]["job"] == "patronus-operator")
    assert operator["health"] == "up", operator["lastError"]
    active = 'patronus_operator_sites_total{phase="Active"} == 3'
    eventually(lambda: lab.query(active), timeout=60, what="the operator's gauge of three Active sites")
    rules = lab.api("/api/v1/rules")["groups"]
    alerts = {r["name"]: r for g in rules for r in g["rules"] if r["type"] == "alerting"}
    assert alerts["PatronusPathDegraded"]["duration"] == 20  # 10m / 30: the lab's quickened copy
    assert all(r["health"] == "ok" for r in alerts.values()), alerts
    # Nothing is wrong in a fresh lab: the operator's alerts are quiet (their faults are unit-tested).
    # LeaderMissing's quickened `for` is 2 s, so two missed scrapes of the operator on a busy host fire
    # it once (CI saw it once); quiet means it resolves, not that it can never have fired.
    eventually(
        lambda: lab.alerts("PatronusOperatorLeaderMissing") == [], timeout=20, what="no LeaderMissing alert"
    )
    assert lab.alerts("PatronusOperatorReconcileErrors") == []


def test_every_operator_panel_returns_data(lab: Lab) -> None:
    exprs = [e for e in dashboard_exprs(annotations=False) if "patronus_operator_" in e]
    assert len(exprs) >= 6
    # rate() needs two samples: wait for three scrapes of the operator rather than lean on test order.
    samples = "count_over_time(patronus_operator_leader[1m]) >= 3"
    eventually(lambda: lab.query(samples), timeout=30, what="three scrapes of the operator")
    _require_data(lab, exprs)


@pytest.mark.usefixtures("clean_links")
def test_every_agent_panel_returns_data(lab: Lab) -> None:
    eventually(
        lambda: len(lab.query("patronus_agent_config_info")) == 3, timeout=30, what="every agent scraped"
    )
    # A failover, so the failover panels have something to count (a counter appears with its first move).
    impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
    eventually(lambda: lab.query("patronus_policy_failovers_total"), timeout=30, what="a failover counted")
    impair.clear(lab.plan, "a/fiber")
    # increase() needs two samples of the counter, which appears with its first failover.
    samples = "count_over_time(patronus_policy_failovers_total[1h]) >= 3"
    eventually(lambda: lab.query(samples), timeout=30, what="three samples of the failover counter")
    # The same for the peers' byte counters, which the agent samples a few seconds after it starts.
    peers = "count_over_time(patronus_wireguard_peer_receive_bytes_total[1m]) >= 3"
    eventually(lambda: len(lab.query(peers)) >= 6, timeout=60, what="three samples of every peer's counters")
    exprs = [e for e in dashboard_exprs(annotations=False) if "patronus_operator_" not in e]
    _require_data(lab, exprs)


def _require_data(lab: Lab, exprs: list[str]) -> None:
    empty = []
    for expr in exprs:
        promql = expr
        for variable, value in LAB_GRAFANA.items():
            promql = promql.replace(variable, value)
        if not lab.query(promql):
            empty.append(promql)
    assert empty == [], f"{len(empty)} of {len(exprs)} panel queries returned nothing: {empty}"


# -- alerts: each fires when its fault is injected and clears when it is removed -----------------------


def _firing(lab: Lab, alert: str, **labels: str) -> Callable[[], bool]:
    return lambda: any(all(a.get(k) == v for k, v in labels.items()) for a in lab.alerts(alert))


@pytest.mark.usefixtures("clean_links")
def test_path_down_fires_on_a_cut_link_and_clears(lab: Lab) -> None:
    assert lab.alerts("PatronusPathDown") == []
    impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
    eventually(
        _firing(lab, "PatronusPathDown", path=fiber("a", "b"), site="a"),
        timeout=30,
        what="PathDown for a->b fiber",
    )
    eventually(
        _firing(lab, "PatronusPathDown", path=fiber("b", "a"), site="b"),
        timeout=30,
        what="PathDown for b->a fiber",
    )
    assert not _firing(lab, "PatronusPathDown", path=path_name(MESH_NAME, "a", "b", "lte"))()
    impair.clear(lab.plan, "a/fiber")
    eventually(lambda: lab.alerts("PatronusPathDown") == [], timeout=30, what="PathDown to clear")


@pytest.mark.usefixtures("clean_links")
def test_path_degraded_fires_after_its_wait_and_clears(lab: Lab) -> None:
    # Loss is judged over the last 1000 probes (5 a second in the lab: 200 s), so that 5 % random loss
    # never crosses a threshold by chance; 30 % shows as degraded once about 75 s of it are in the window
    # (11 % of 1000), and leaves it once the window has let enough of it go again.
    impair.set_impairment(lab.plan, "b/lte", Impairment(loss_pct=30))
    degraded = path_name(MESH_NAME, "b", "a", "lte")
    eventually(
        _firing(lab, "PatronusPathDegraded", path=degraded), timeout=180, what="PathDegraded for b->a lte"
    )
    impair.clear(lab.plan, "b/lte")
    eventually(
        lambda: not _firing(lab, "PatronusPathDegraded", path=degraded)(),
        timeout=240,
        what="PathDegraded to clear",
    )


@pytest.mark.usefixtures("clean_links")
def test_failover_flapping_fires_on_three_failovers_and_clears(lab: Lab) -> None:
    for _ in range(3):
        impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
        eventually(lambda: _on_backup(lab) == 1, timeout=20, what="voice on its backup")
        impair.clear(lab.plan, "a/fiber")
        eventually(
            lambda: _on_backup(lab) == 0, timeout=40, what="voice back on its primary (after the cooldown)"
        )
    eventually(
        _firing(lab, "PatronusFailoverFlapping", policy="voice", site="a"),
        timeout=30,
        what="FailoverFlapping",
    )
    # The window is 30 minutes, 60 s in the lab: the alert ends when the failovers age out of it.
    eventually(
        lambda: lab.alerts("PatronusFailoverFlapping") == [], timeout=120, what="FailoverFlapping to clear"
    )


def _on_backup(lab: Lab) -> int | None:
    """1 while a's exporter says voice runs on its lte backup, 0 on its fiber primary."""
    result = lab.query('patronus_policy_path_in_use{site="a",policy="voice"} == 1')
    paths = {r["metric"]["path"] for r in result}
    if paths == {path_name(MESH_NAME, "a", "b", "lte")}:
        return 1
    return 0 if paths == {fiber("a", "b")} else None


def test_site_agent_stale_fires_for_a_frozen_agent_and_clears(lab: Lab) -> None:
    eventually(
        lambda: len(lab.query("patronus_agent_config_info")) == 3, timeout=30, what="every agent scraped"
    )
    pid = lab.agent_pid("c")
    os.kill(pid, signal.SIGSTOP)  # alive but silent: its scrapes time out, as with a hung or dead agent
    try:
        eventually(_firing(lab, "PatronusSiteAgentStale", site="c"), timeout=30, what="SiteAgentStale for c")
        assert not _firing(lab, "PatronusSiteAgentStale", site="a")()
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: lab.alerts("PatronusSiteAgentStale") == [], timeout=30, what="SiteAgentStale to clear")


def test_leader_missing_fires_while_the_operator_is_frozen_and_clears(lab: Lab) -> None:
    """The lab's operator runs inside its supervisor: frozen, it answers no scrape, as a dead operator.

    (Its forwarders freeze with it, so the agents' series go stale too; that is what a whole control node
    going away looks like. The reconcile-errors alert has no fault the lab can inject reliably: its logic
    is covered by promtool's unit tests.)
    """
    supervisor = int(lab.files.pid.read_text())
    assert lab.alerts("PatronusOperatorLeaderMissing") == []
    os.kill(supervisor, signal.SIGSTOP)
    try:
        eventually(_firing(lab, "PatronusOperatorLeaderMissing"), timeout=30, what="LeaderMissing")
    finally:
        os.kill(supervisor, signal.SIGCONT)
    eventually(
        lambda: lab.alerts("PatronusOperatorLeaderMissing") == [], timeout=30, what="LeaderMissing to clear"
    )
    eventually(
        lambda: len(lab.query("patronus_agent_config_info")) == 3, timeout=30, what="agents scraped again"
    )


# -- the dashboard in a real browser ---------------------------------------------------------------


def test_the_dashboard_refuses_unauthenticated_requests(lab: Lab) -> None:
    def status(path: str, token: str | None = None) -> int:
        request = urllib.request.Request(f"{lab.dashboard}{path.lstrip('/')}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    assert status("/api/snapshot") == 401
    assert status("/api/stream") == 401
    assert status("/api/snapshot", "forged") == 401
    assert status("/api/snapshot", lab.token) == 200


async def poll(page: Any, expr: str, timeout: float, what: str) -> Any:
    """Evaluate ``expr`` in the page until truthy (not wait_for_function: the page's CSP forbids eval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await page.evaluate(expr)
        if value:
            return value
        await page.wait_for_timeout(100)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.usefixtures("clean_links")
async def test_the_dashboard_in_a_browser_follows_a_cut_link_live(lab: Lab) -> None:
    from playwright.async_api import async_playwright  # noqa: PLC0415

    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 820})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            refused = await page.goto(f"{lab.dashboard}api/snapshot")
            assert refused is not None
            assert refused.status == 401
            problems.clear()  # the 401 above is logged by the browser as a failed resource, on purpose
            await page.goto(f"{lab.dashboard}login#token={lab.token}")
            await page.wait_for_url(lab.dashboard, timeout=20_000)  # signed in: the login page moved on

            await poll(page, "document.body.dataset.topology === 'ready'", 20, "the topology")
            nodes = await page.evaluate("window.patronus.cy.nodes().map((n) => n.id()).sort()")
            edges = await page.evaluate("window.patronus.cy.edges().map((e) => e.id()).sort()")
            assert nodes == ["a", "b", "c"]
            assert edges == sorted(lab.path_states())
            # All up (a loaded machine may show a path degraded for a check: the page follows it live).
            await poll(
                page, "window.patronus.cy.edges('[state = \"up\"]').length === 12", 30, "12 green edges"
            )
            await page.evaluate("window.notReloaded = true")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-topology.png"))

            impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
            cut = time.monotonic()
            red = "window.patronus.cy.getElementById('%s').style('line-color') === 'rgb(214,39,40)'"
            both = f"{red % fiber('a', 'b')} && {red % fiber('b', 'a')}"
            await poll(page, both, 10, "the cut fiber edges to turn red")
            row = "document.querySelector('#side-policies tr[data-policy=\"voice\"]')"
            await poll(page, f"{row}?.dataset.onBackup === 'true'", 10, "voice on its backup in the page")
            seconds = time.monotonic() - cut
            in_use = await page.evaluate(f"{row}.querySelector('.path-in-use').textContent")
            assert in_use == path_name(MESH_NAME, "a", "b", "lte")
            assert await page.evaluate("window.notReloaded === true")
            await page.screenshot(path=str(ARTIFACTS / "dashboard-topology-cut.png"))

            await page.evaluate(f"location.hash = '#/path/{fiber('a', 'b')}'")
            await poll(
                page, "document.querySelectorAll('#charts .uplot').length === 4", 10, "the path's charts"
            )
            await page.screenshot(path=str(ARTIFACTS / "dashboard-path.png"), full_page=True)
            await page.evaluate("location.hash = '#/policies'")
            await poll(
                page, "document.querySelector('#view-policies tr[data-policy=\"voice\"]')", 5, "the policies"
            )
            await page.screenshot(path=str(ARTIFACTS / "dashboard-policies.png"), full_page=True)
        finally:
            await browser.close()
    print(f"cut to red edges and voice on backup in the page: {seconds:.1f} s")
    assert problems == []
