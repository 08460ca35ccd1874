"""Dashboard benchmark: a 40-site full mesh (1,560 Paths) in headless Chromium, idle and with updates flowing.

    .venv/bin/python bench/dashboard.py [--sites 40] [--updates-per-second 200] [--seconds 10]

The dashboard runs in this process over the in-memory FakeKube (the browser is what is measured, not the
API server), without authentication, on loopback. Chromium is Debian's (``/usr/bin/chromium``).

- Render: from navigation start to the topology drawn (the page's ``data-topology`` mark, then one more
  animation frame). Baseline, measured in the same run: Cytoscape.js alone drawing the same elements
  with the same layout on a blank page (the library's floor for this graph).
- Responsiveness while Path reports flow in at ``--updates-per-second`` (every path reporting about
  every 8 s at 200/s): animation-frame gaps and the time from clicking a route to the page shown,
  against the same measurements with nothing flowing (baseline); and the time from a Path's status write
  to its edge turning red in the page.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from patronus.dashboard.app import DashboardOptions, serve
from patronus.kube.fake import FakeKube
from patronus.kube.resource import PATH, POLICY, SITE
from patronus.kube.timestamps import format_time
from patronus.runtime.logs import configure_logging

NAMESPACE = "bench"
CHROMIUM = "/usr/bin/chromium"
FRAME_PROBE = """async (ms) => {
  const gaps = []; let last = performance.now(); const end = last + ms;
  await new Promise((done) => { function tick(t) { gaps.push(t - last); last = t;
    if (t < end) requestAnimationFrame(tick); else done(); } requestAnimationFrame(tick); });
  return gaps;
}"""
BASELINE = """async (elements) => {
  const many = elements.filter((e) => e.group === 'edges').length > 400;  // the page's MANY_EDGES
  const t0 = performance.now();
  const holder = document.createElement('div'); holder.style.cssText = 'position:absolute;inset:0';
  document.body.append(holder);
  const cy = cytoscape({ container: holder, elements, layout: { name: 'circle', animate: false, padding: 40 },
    style: [{ selector: 'edge', style: many
      ? { 'curve-style': 'haystack', 'haystack-radius': 0.6, width: 1 }
      : { 'curve-style': 'bezier', 'target-arrow-shape': 'triangle' } }] });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
}"""


def world(sites: int) -> list[dict[str, Any]]:
    names = [f"s{i:02d}" for i in range(sites)]
    now = format_time(datetime.now(UTC), millis=True)
    objects: list[dict[str, Any]] = []
    for name in names:
        spec = {"wireguard": {"listenPort": 51820, "endpoints": [f"{name}.example:51820"]}}
        objects.append(
            {"apiVersion": SITE.api_version, "kind": "Site",
             "metadata": {"name": name, "namespace": NAMESPACE},
             "spec": {**spec, "underlays": [{"name": "fiber", "endpoint": f"{name}.example:51820"}]},
             "status": {"phase": "Active", "healthScore": 98.0}}
        )  # fmt: skip
    for source in names:
        for destination in names:
            if source != destination:
                objects.append(path_object(source, destination, now))
    for index in range(min(4, sites - 1)):
        a, b = names[index], names[index + 1]
        objects.append(
            {"apiVersion": POLICY.api_version, "kind": "Policy", "metadata": {"name": f"p{index}",
             "namespace": NAMESPACE}, "spec": {"priority": 10, "match": {"protocol": "udp"}, "action": {
             "type": "route", "primaryPath": {"siteRef": a, "pathId": f"m-{a}-{b}-fiber"}}}}
        )  # fmt: skip
    return objects


def path_object(source: str, destination: str, now: str) -> dict[str, Any]:
    return {
        "apiVersion": PATH.api_version, "kind": "Path",
        "metadata": {"name": f"m-{source}-{destination}-fiber", "namespace": NAMESPACE},
        "spec": {"source": {"siteRef": source}, "destination": {"siteRef": destination}, "underlay": "fiber"},
        "status": {"state": "up", "lastChecked": now,
                   "health": {"latencyMs": 10.0, "jitterMs": 0.5, "packetLossPct": 0.0, "healthScore": 99.0}},
    }  # fmt: skip


async def report(kube: FakeKube, name: str, state: str, rng: random.Random) -> None:
    health = {"latencyMs": round(rng.uniform(5, 60), 2), "jitterMs": round(rng.uniform(0, 4), 2),
              "packetLossPct": 0.0, "healthScore": round(rng.uniform(80, 99), 1)}  # fmt: skip
    status = {"state": state, "lastChecked": format_time(datetime.now(UTC), millis=True), "health": health}
    patch = {"status": status}
    await kube.patch_merge(PATH, NAMESPACE, name, patch, subresource="status")


async def flow(kube: FakeKube, names: list[str], per_second: int, stop: asyncio.Event) -> int:
    """Write ``per_second`` Path reports a second (in ticks of 50 ms) until ``stop``; returns how many."""
    rng, sent, tick = random.Random(7), 0, 0.05
    while not stop.is_set():
        started = time.perf_counter()
        for _ in range(max(1, round(per_second * tick))):
            await report(kube, rng.choice(names), "up", rng)
            sent += 1
        await asyncio.sleep(max(0.0, tick - (time.perf_counter() - started)))
    return sent


async def render_time(page: Page, url: str) -> float:
    await page.goto(url)
    ready: float = await page.evaluate(
        """async () => { while (document.body.dataset.topology !== 'ready') {
            await new Promise((r) => setTimeout(r, 5)); }
          return await new Promise((r) => requestAnimationFrame(() => r(performance.now()))); }"""
    )
    return ready


async def route_latency(page: Page, names: list[str], rounds: int) -> list[float]:
    """Milliseconds from setting a route to its page being in the DOM (site pages: tables of ~80 paths)."""
    samples = []
    for index in range(rounds):
        ms: float = await page.evaluate(
            """async (name) => { const t0 = performance.now(); location.hash = '#/site/' + name;
              await new Promise((r) => { const check = () => (document.querySelector('#view-site h2') &&
                !document.getElementById('view-site').hidden && document.querySelector('#view-site h2')
                .textContent.includes(name)) ? r() : requestAnimationFrame(check); check(); });
              return performance.now() - t0; }""",
            names[index % len(names)],
        )
        samples.append(ms)
        await page.evaluate("location.hash = '#/'")
    return samples


async def propagation(page: Page, kube: FakeKube, name: str) -> float:
    """Milliseconds from a Path's status write to its edge drawn red (polled in the page every 10 ms)."""
    started = time.perf_counter()
    await report(kube, name, "down", random.Random(1))
    ms: float = await page.evaluate(
        """async (name) => { const t0 = performance.now();
          while (window.patronus.cy.getElementById(name).style('line-color') !== 'rgb(214,39,40)') {
            if (performance.now() - t0 > 30000) throw new Error('no red edge after 30 s');
            await new Promise((r) => setTimeout(r, 10)); }
          return performance.now() - t0; }""",
        name,
    )
    return max(ms, (time.perf_counter() - started) * 1000)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def summary(samples: list[float]) -> str:
    median, worst = statistics.median(samples), max(samples)
    return f"median {median:6.1f} ms, p99 {p99(samples):6.1f} ms, max {worst:6.1f} ms"


async def measure_render(browser: Browser, url: str) -> Page:
    """Three loads of the dashboard against three draws by Cytoscape.js alone; returns the dashboard."""
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    renders = [await render_time(page, url) for _ in range(3)]
    elements: list[dict[str, Any]] = await page.evaluate("window.patronus.cy.elements().jsons()")
    base = await browser.new_page(viewport={"width": 1400, "height": 900})
    await base.goto(url + "static/vendor/uPlot.min.css")  # same origin, nothing of ours runs
    await base.add_script_tag(url=url + "static/vendor/cytoscape.min.js")
    plain = [{"group": e["group"], "data": e["data"]} for e in elements]
    baselines = [await base.evaluate(BASELINE, plain) for _ in range(3)]
    await base.close()
    await page.bring_to_front()  # a page in the background gets no animation frames
    ratio = statistics.median(renders) / statistics.median(baselines)
    print(f"render: dashboard       {summary(renders)}  (runs {', '.join(f'{r:.0f}' for r in renders)})")
    print(f"        Cytoscape alone {summary(baselines)}  (runs {', '.join(f'{r:.0f}' for r in baselines)})")
    print(f"        ratio {ratio:.2f}")
    return page


async def measure_flow(
    page: Page, kube: FakeKube, names: dict[str, list[str]], rate: int, seconds: float
) -> None:
    """Frames and route changes idle, then with ``rate`` Path reports a second; then write -> red edge."""
    progress("measuring idle frames and routes")
    idle_frames = await page.evaluate(FRAME_PROBE, 3000)
    idle_routes = await route_latency(page, names["sites"], 20)
    stop = asyncio.Event()
    marked = random.Random(3).sample(names["paths"], 5)  # turned down, while the others keep reporting
    writer = asyncio.create_task(flow(kube, [n for n in names["paths"] if n not in marked], rate, stop))
    started = time.perf_counter()
    updates_before = await page.evaluate("window.patronus.updates")
    progress("measuring with updates flowing")
    busy_frames = await page.evaluate(FRAME_PROBE, int(seconds * 1000 / 2))
    busy_routes = await route_latency(page, names["sites"], 20)
    progress("measuring write -> red edge")
    delays = [await propagation(page, kube, name) for name in marked]
    stop.set()
    sent = await writer
    elapsed = time.perf_counter() - started
    deltas = await page.evaluate("window.patronus.updates") - updates_before
    print(
        f"updates: {sent} Path reports in {elapsed:.1f} s ({sent / elapsed:.0f}/s), {deltas} deltas applied"
    )
    print(f"frames:  idle {summary(idle_frames)}")
    print(f"         busy {summary(busy_frames)}; p99 ratio {p99(busy_frames) / p99(idle_frames):.2f}")
    print(f"route:   idle {summary(idle_routes)}")
    ratio = statistics.median(busy_routes) / statistics.median(idle_routes)
    print(f"         busy {summary(busy_routes)}; median ratio {ratio:.2f}")
    print(f"write -> red edge: {summary(delays)}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def main(sites: int, per_second: int, seconds: float) -> None:
    kube = FakeKube(history=4000)  # long enough that the dashboard's watch never falls behind it
    objects = world(sites)
    kube.seed(*objects)
    names = {
        "paths": [o["metadata"]["name"] for o in objects if o["kind"] == "Path"],
        "sites": [o["metadata"]["name"] for o in objects if o["kind"] == "Site"],
    }
    urls: list[str] = []
    stop_server = asyncio.Event()
    options = DashboardOptions(NAMESPACE, "127.0.0.1", 0, auth=False)
    server = asyncio.create_task(serve(options, kube, stop_server, urls.append))
    while not urls:
        await asyncio.sleep(0.05)
    print(f"{sites} sites, {len(names['paths'])} paths; dashboard at {urls[0]}")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await measure_render(browser, urls[0])
            await measure_flow(page, kube, names, per_second, seconds)
        finally:
            await browser.close()
    stop_server.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server, 30)


if __name__ == "__main__":
    configure_logging("warning", "console")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=40)
    parser.add_argument("--updates-per-second", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.sites, arguments.updates_per_second, arguments.seconds))
