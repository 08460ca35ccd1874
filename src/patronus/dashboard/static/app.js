// The Patronus dashboard page: a live picture of one namespace, kept current by the server's event
// stream (a snapshot, then deltas), drawn with Cytoscape.js (the graph and its layout) and uPlot (the
// charts). Pages are routes of the hash (#/, #/site/NAME, #/path/NAME, #/policies, #/events); nothing
// reloads. Data only ever reaches the DOM as text (textContent), never as markup.
"use strict";

const STATE_COLORS = { up: "#2e9d4f", degraded: "#e0a100", down: "#d62728", unknown: "#8c8c8c" };
const PHASE_COLORS = { Active: "#2e9d4f", Degraded: "#e0a100", Failed: "#d62728", Pending: "#8c8c8c" };
const LINE_STYLES = ["solid", "dashed", "dotted"];
const HISTORY_WINDOW = 900;
// Above this many edges, straight "haystack" edges (Cytoscape's fast path) instead of curved ones with
// arrows: a full mesh of 40 sites has 1,560 Paths per underlay, and curves cost several times more to draw.
const MANY_EDGES = 400;

const world = {
  namespace: "",
  sites: new Map(),
  paths: new Map(),
  policies: new Map(),
  events: [],
  switches: new Map(),
};
let cy = null;
let underlays = [];
let pathChartFor = null;
let historyTimer = null;

// -- small DOM helpers ------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(href, text) {
  return el("a", { href }, text);
}

function fmt(value, digits = 1, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function when(text) {
  if (!text) return "–";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleTimeString();
}

function badge(state) {
  return el("span", { class: "badge", dataset: { state } }, state);
}

function table(headers, rows, attrs = {}) {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  return el("table", attrs, el("thead", {}, head), el("tbody", {}, ...rows));
}

// -- the world, from the stream ------------------------------------------------------------------

function byName(list) {
  return new Map(list.map((item) => [item.name, item]));
}

function applySnapshot(snapshot) {
  world.namespace = snapshot.namespace;
  world.sites = byName(snapshot.sites);
  world.paths = byName(snapshot.paths);
  world.policies = byName(snapshot.policies);
  world.events = snapshot.events;
  document.getElementById("namespace").textContent = `namespace ${snapshot.namespace}`;
  drawGraph(true);
}

function applyDelta(delta) {
  for (const key of ["sites", "paths", "policies"]) {
    for (const item of delta[key]) world[key].set(item.name, item);
    for (const name of delta.deleted[key]) world[key].delete(name);
  }
  if (delta.events.length) {
    const seen = new Set(delta.events.map((e) => e.uid));
    world.events = [...delta.events, ...world.events.filter((e) => !seen.has(e.uid))]
      .sort((a, b) => (Date.parse(b.time) || 0) - (Date.parse(a.time) || 0))
      .slice(0, 100);
  }
  for (const s of delta.switches) {
    if (!world.switches.has(s.policy)) world.switches.set(s.policy, []);
    world.switches.get(s.policy).push(s);
  }
  const structural = delta.sites.some((s) => !cy || cy.getElementById(s.name).empty())
    || delta.paths.some((p) => !cy || cy.getElementById(p.name).empty())
    || Object.values(delta.deleted).some((names) => names.length);
  if (structural) drawGraph(delta.sites.length > 0 || delta.deleted.sites.length > 0);
  else updateGraph(delta.sites, delta.paths);
}

// -- topology (Cytoscape.js draws and lays out; we only say what and how it looks) ------------------

function graphStyle() {
  const many = world.paths.size > MANY_EDGES;
  const edgeShape = many
    ? { "curve-style": "haystack", "haystack-radius": 0.6 }
    : { "curve-style": "bezier", "control-point-step-size": 14, "target-arrow-shape": "triangle", "arrow-scale": 0.7 };
  const style = [
    {
      selector: "node",
      style: {
        label: "data(id)", "background-color": "data(color)", color: "#1d2733", "font-size": 12,
        "text-valign": "center", "text-halign": "center", width: 34, height: 34,
        "border-width": 2, "border-color": "#ffffff",
      },
    },
    {
      selector: "edge",
      style: {
        width: many ? 1 : 2, "line-color": "data(color)", "target-arrow-color": "data(color)", opacity: 0.85,
        ...edgeShape,
      },
    },
    { selector: "edge:selected", style: { width: 4, opacity: 1 } },
  ];
  underlays.forEach((name, index) => {
    style.push({ selector: `edge[underlay = "${name}"]`, style: { "line-style": LINE_STYLES[index % 3] } });
  });
  return style;
}

function nodeData(site) {
  return { id: site.name, phase: site.phase, color: PHASE_COLORS[site.phase] || PHASE_COLORS.Pending };
}

function edgeData(path) {
  return {
    id: path.name, source: path.source, target: path.destination, underlay: path.underlay,
    state: path.state, color: STATE_COLORS[path.state] || STATE_COLORS.unknown,
  };
}

function elements() {
  const nodes = [...world.sites.values()].map((site) => ({ group: "nodes", data: nodeData(site) }));
  const edges = [...world.paths.values()]
    .filter((p) => world.sites.has(p.source) && world.sites.has(p.destination))
    .map((path) => ({ group: "edges", data: edgeData(path) }));
  return [...nodes, ...edges];
}

function drawGraph(relayout) {
  underlays = [...new Set([...world.paths.values()].map((p) => p.underlay))].sort();
  if (!cy) {
    cy = cytoscape({
      container: document.getElementById("cy"),
      elements: elements(),
      style: graphStyle(),
      layout: { name: "circle", animate: false, padding: 40 },
      minZoom: 0.1,
      maxZoom: 4,
      hideEdgesOnViewport: world.paths.size > MANY_EDGES,  // pan and zoom stay smooth on a big mesh
    });
    cy.on("tap", "node", (event) => { location.hash = `#/site/${event.target.id()}`; });
    cy.on("tap", "edge", (event) => { location.hash = `#/path/${event.target.id()}`; });
    window.patronus.cy = cy;
  } else {
    cy.batch(() => {
      cy.elements().remove();
      cy.add(elements());
    });
    cy.style(graphStyle());
    if (relayout) cy.layout({ name: "circle", animate: false, padding: 40 }).run();
  }
  drawLegend();
  renderSide();
  route();
  document.body.dataset.topology = "ready";
  window.patronus.drawn += 1;
}

function updateGraph(sites, paths) {
  cy.batch(() => {
    for (const site of sites) cy.getElementById(site.name).data(nodeData(site));
    for (const path of paths) cy.getElementById(path.name).data(edgeData(path));
  });
  renderSide();
  route(true);
  window.patronus.updates += 1;
}

function drawLegend() {
  const legend = document.getElementById("legend");
  legend.replaceChildren(
    ...Object.entries(STATE_COLORS).map(([state, color]) =>
      el("span", { class: "key", style: `--c:${color}` }, state)),
    ...underlays.map((name, index) =>
      el("span", { class: `key line ${LINE_STYLES[index % 3]}` }, name)),
  );
}

function renderSide() {
  const counts = { up: 0, degraded: 0, down: 0, unknown: 0 };
  for (const path of world.paths.values()) counts[path.state] = (counts[path.state] || 0) + 1;
  document.getElementById("path-counts").replaceChildren(
    ...Object.entries(counts).map(([state, n]) => el("span", { class: "count", dataset: { state } }, `${n} ${state}`)),
  );
  document.getElementById("side-policies").replaceChildren(...[...world.policies.values()].map((p) =>
    el("tr", { dataset: { policy: p.name, onBackup: String(p.onBackup) } },
      el("td", {}, link(`#/policies`, p.name)),
      el("td", { class: "path-in-use" }, p.pathInUse ? link(`#/path/${p.pathInUse}`, p.pathInUse) : "–"),
      el("td", {}, p.onBackup ? badge("backup") : p.pathInUse ? badge("primary") : ""))));
  document.getElementById("side-events").replaceChildren(...world.events.slice(0, 10).map((e) =>
    el("li", { dataset: { type: e.type } }, el("b", {}, e.reason), ` ${e.object}: ${e.message}`)));
}

// -- pages -----------------------------------------------------------------------------------------

function show(id) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== id;
}

function pathRow(path) {
  return el("tr", { dataset: { path: path.name, state: path.state } },
    el("td", {}, link(`#/path/${path.name}`, path.name)), el("td", {}, path.underlay), el("td", {}, badge(path.state)),
    el("td", {}, fmt(path.latencyMs, 1, " ms")), el("td", {}, fmt(path.jitterMs, 1, " ms")),
    el("td", {}, fmt(path.lossPct, 2, " %")), el("td", {}, fmt(path.healthScore, 1)));
}

const PATH_HEADERS = ["Path", "Underlay", "State", "Latency", "Jitter", "Loss", "Health"];

function renderSite(name) {
  const site = world.sites.get(name);
  const section = document.getElementById("view-site");
  if (!site) { section.replaceChildren(el("p", {}, `No site ${name}.`)); return; }
  const paths = [...world.paths.values()];
  const outgoing = paths.filter((p) => p.source === name);
  const incoming = paths.filter((p) => p.destination === name);
  const policies = [...world.policies.values()].filter((p) => p.site === name);
  section.replaceChildren(
    el("h2", {}, "Site ", site.name, " ", el("span", { class: "badge", dataset: { state: site.phase } }, site.phase)),
    el("dl", { class: "facts" },
      el("dt", {}, "Location"), el("dd", {}, site.location || "–"),
      el("dt", {}, "Underlays"), el("dd", {}, site.underlays.join(", ") || "–"),
      el("dt", {}, "Subnets"), el("dd", {}, site.subnets.join(", ") || "–"),
      el("dt", {}, "Health"), el("dd", {}, fmt(site.healthScore)),
      el("dt", {}, "Active paths"), el("dd", {}, site.activePaths ?? "–"),
      el("dt", {}, "Last report"), el("dd", {}, when(site.lastHeartbeatTime)),
      el("dt", {}, "Agent"), el("dd", {}, site.agentVersion || "–", site.configError ? ` (config error: ${site.configError})` : "")),
    el("h3", {}, "Outgoing paths"), table(PATH_HEADERS, outgoing.map(pathRow)),
    el("h3", {}, "Incoming paths"), table(PATH_HEADERS, incoming.map(pathRow)),
    el("h3", {}, "Policies enforced here"), policiesTable(policies),
    el("h3", {}, "Events"), eventsTable(world.events.filter((e) => e.object === name || e.object.includes(`-${name}-`))),
  );
}

function renderPath(name, keepCharts) {
  const path = world.paths.get(name);
  const section = document.getElementById("view-path");
  if (!path) { section.replaceChildren(el("p", {}, `No path ${name}.`)); pathChartFor = null; return; }
  const facts = el("dl", { class: "facts", id: "path-facts" },
    el("dt", {}, "From"), el("dd", {}, link(`#/site/${path.source}`, path.source)),
    el("dt", {}, "To"), el("dd", {}, link(`#/site/${path.destination}`, path.destination)),
    el("dt", {}, "Underlay"), el("dd", {}, path.underlay),
    el("dt", {}, "State"), el("dd", {}, badge(path.state)),
    el("dt", {}, "Latency / jitter"), el("dd", {}, `${fmt(path.latencyMs, 2, " ms")} / ${fmt(path.jitterMs, 2, " ms")}`),
    el("dt", {}, "Loss"), el("dd", {}, fmt(path.lossPct, 2, " %")),
    el("dt", {}, "Health"), el("dd", {}, fmt(path.healthScore)),
    el("dt", {}, "Last checked"), el("dd", {}, when(path.lastChecked)));
  const using = [...world.policies.values()].filter((p) => p.pathInUse === name);
  if (keepCharts && pathChartFor === name) {
    document.getElementById("path-facts").replaceWith(facts);
    scheduleHistory(name, 2000);
    return;
  }
  section.replaceChildren(
    el("h2", {}, "Path ", path.name), facts,
    el("p", { class: "muted" }, using.length ? `In use by ${using.map((p) => p.name).join(", ")}.` : "No policy uses it now."),
    el("p", { id: "history-source", class: "muted" }, "loading history…"),
    el("div", { id: "charts", class: "charts" }),
  );
  pathChartFor = name;
  scheduleHistory(name, 0);
}

function scheduleHistory(name, delay) {
  if (historyTimer) return;
  historyTimer = setTimeout(() => { historyTimer = null; loadHistory(name); }, delay);
}

const CHARTS = [
  ["latencyMs", "Latency (ms)"], ["jitterMs", "Jitter (ms)"], ["lossPct", "Loss (%)"], ["healthScore", "Health score"],
];

async function loadHistory(name) {
  if (pathChartFor !== name) return;
  const response = await fetch(`/api/paths/${encodeURIComponent(name)}/history?window=${HISTORY_WINDOW}`,
    { credentials: "same-origin" });
  if (pathChartFor !== name) return;
  const source = document.getElementById("history-source");
  if (!response.ok) { source.textContent = `history unavailable (${response.status})`; return; }
  const body = await response.json();
  const series = body.series;
  const origin = body.source === "prometheus" ? "Prometheus" : "the dashboard's memory";
  source.textContent = `${series.time.length} samples of the last ${HISTORY_WINDOW / 60} minutes, from ${origin}`
    + (body.note ? ` (${body.note})` : "");
  source.dataset.source = body.source;
  const charts = document.getElementById("charts");
  const width = Math.max(320, Math.floor((charts.clientWidth || 900) / 2) - 24);
  charts.replaceChildren();
  for (const [key, title] of CHARTS) {
    const holder = el("div", { class: "chart", dataset: { metric: key } });
    charts.append(holder);
    new uPlot({
      title, width, height: 180, scales: { x: { time: true } },
      series: [{}, { label: title, stroke: "#1f77b4", width: 1.5, spanGaps: false }],
      legend: { show: false },
    }, [series.time, series[key]], holder);
  }
}

function policiesTable(policies) {
  return table(["Policy", "Site", "Priority", "Primary", "Backup", "In use", "Failovers", "Last failover", "Flows", "Bytes"],
    policies.map((p) => el("tr", { dataset: { policy: p.name, onBackup: String(p.onBackup) } },
      el("td", {}, p.name), el("td", {}, p.site || "–"), el("td", {}, p.priority),
      el("td", {}, p.primaryPath || "–"), el("td", {}, p.backupPath || "–"),
      el("td", { class: "path-in-use" }, p.pathInUse || "–", " ", p.onBackup ? badge("backup") : ""),
      el("td", {}, p.failoverCount), el("td", {}, when(p.lastFailoverTime)),
      el("td", {}, p.matchedFlows ?? "–"), el("td", {}, p.bytesRouted ?? "–"))));
}

function renderPolicies() {
  const policies = [...world.policies.values()];
  const timelines = policies.map((p) => {
    const switches = world.switches.get(p.name) || [];
    return el("div", { class: "timeline", dataset: { policy: p.name } },
      el("h4", {}, `${p.name}: failover timeline`),
      switches.length
        ? el("ol", {}, ...switches.map((s) => el("li", {}, `${new Date(s.time * 1000).toLocaleTimeString()}: `,
          `${s.fromPath || "–"} → ${s.toPath}`, s.onBackup ? " (backup)" : " (primary)")))
        : el("p", { class: "muted" }, p.lastFailoverTime
          ? `last failover ${when(p.lastFailoverTime)} (${p.failoverCount} in all)` : "no failover seen"));
  });
  document.getElementById("view-policies").replaceChildren(el("h2", {}, "Policies"), policiesTable(policies), ...timelines);
}

function eventsTable(events) {
  return table(["Time", "Type", "Reason", "Object", "Message", "Count"], events.map((e) =>
    el("tr", { dataset: { type: e.type } }, el("td", {}, when(e.time)), el("td", {}, e.type), el("td", {}, e.reason),
      el("td", {}, `${e.kind}/${e.object}`), el("td", {}, e.message), el("td", {}, e.count))));
}

function renderEvents() {
  document.getElementById("view-events").replaceChildren(el("h2", {}, "Recent events"), eventsTable(world.events));
}

function route(update = false) {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [page, name] = parts;
  if (page === "site" && name) { show("view-site"); renderSite(name); }
  else if (page === "path" && name) { show("view-path"); renderPath(name, update); }
  else if (page === "policies") { show("view-policies"); renderPolicies(); }
  else if (page === "events") { show("view-events"); renderEvents(); }
  else { show("view-topology"); if (cy && !update) cy.resize(); }
  if (page !== "path") pathChartFor = null;
}

// -- the stream ------------------------------------------------------------------------------------

function setConnection(state) {
  const node = document.getElementById("connection");
  node.dataset.state = state;
  node.textContent = state;
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("snapshot", (event) => { applySnapshot(JSON.parse(event.data)); setConnection("live"); });
  source.addEventListener("delta", (event) => applyDelta(JSON.parse(event.data)));
  source.onerror = async () => {
    setConnection("reconnecting");
    const probe = await fetch("/api/snapshot", { credentials: "same-origin" }).catch(() => null);
    if (probe && probe.status === 401) { source.close(); location.replace("/login"); }
  };
}

window.patronus = { world, cy: null, drawn: 0, updates: 0 };
window.addEventListener("hashchange", () => route());
document.addEventListener("DOMContentLoaded", connect);
