"use strict";
// yoyu's dashboard: five pages over one event stream (/dashboard/events) and a few JSON calls.
// Values reach the page through textContent only: nothing from the server is parsed as HTML.

const MIB = 1024 * 1024, GIB = 1024 * MIB;
const HISTORY = 900;
const state = { rows: [], latest: null, guard: [], models: [], page: "memory", keyRequired: false };
const charts = {};
window.yoyu = { state, charts };
// The page's words in the reader's language: the server puts their table in the page
// (gateway/dashboard/language.py); an id without an entry is its own English.
const WORDS = JSON.parse((document.getElementById("i18n") || {}).textContent || "{}");
function t(id, values) {
  const text = WORDS[id] || id;
  return values ? text.replace(/\{(\w+)\}/g, (whole, name) => name in values ? String(values[name]) : whole) : text;
}

// -- small helpers -------------------------------------------------------------
const $ = (id) => document.getElementById(id);
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") node.setAttribute("style", value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const a = Math.abs(n), text = a >= GIB ? (a / GIB).toFixed(2) + " GiB" : (a / MIB).toFixed(2) + " MiB";
  return (n < 0 && !/^0\.00 /.test(text) ? "-" : "") + text;  // no "-0.00"
}
function signed(n) {
  if (n === null || n === undefined) return "–";
  const text = bytes(n);
  return n > 0 && !/^0\.00 /.test(text) ? "+" + text : text;
}
function clock(t) { return new Date(t * 1000).toLocaleTimeString(); }
function when(t) { return new Date(t * 1000).toLocaleString(); }
function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
function replace(node, ...children) { node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)); }
function table(node, head, rows) {
  replace(node, h("thead", {}, h("tr", {}, head.map(([text, cls]) => h("th", { class: cls }, text)))),
    h("tbody", {}, rows));
}
function showError(message) { const node = $("error"); node.textContent = message || ""; node.hidden = !message; }

async function api(path, options) {
  const answer = await fetch(path, { credentials: "same-origin", ...options });
  if (answer.status === 401) { location.assign("/login"); throw new Error(t("sign in first")); }
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error((body.error && body.error.message) || `${path}: ${answer.status}`);
  return body;
}
function post(path, payload) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(payload || {}) });
}

// -- charts (uPlot) ---------------------------------------------------------------
function chartWidth(node) { return Math.max(260, node.clientWidth - 12); }
function axis(label, values) {
  return { label, stroke: css("--muted"), grid: { stroke: css("--line"), width: 1 },
    ticks: { stroke: css("--line") }, values, size: 62 };
}
const gib = (u, ticks) => ticks.map((v) => (v / GIB).toFixed(v % GIB === 0 ? 0 : 1) + "G");
// Tick labels with as many decimals as their spacing needs (a soak moves by a few MiB).
const decimals = (ticks, unit) => ticks.length > 1 ? Math.max(0, Math.min(3, -Math.floor(Math.log10(Math.abs(ticks[1] - ticks[0]) / unit || 1)))) : 0;
const mib = (u, ticks) => { const d = decimals(ticks, MIB); return ticks.map((v) => (v / MIB).toFixed(d) + "M"); };
const seconds = (u, ticks) => { const d = decimals(ticks, 1); return ticks.map((v) => v.toFixed(d) + "s"); };
function makeChart(key, node, series, data, opts) {
  if (charts[key]) { charts[key].destroy(); }
  node.replaceChildren();
  const options = {
    width: chartWidth(node), height: opts.height || 240, series: [opts.x || {}, ...series],
    axes: [{ stroke: css("--muted"), grid: { stroke: css("--line"), width: 1 }, ticks: { stroke: css("--line") },
             ...(opts.xValues ? { values: opts.xValues } : {}), ...(opts.xIncrs ? { incrs: opts.xIncrs } : {}) },
           axis(opts.yLabel || "", opts.yValues || gib), ...(opts.axes || [])],
    scales: opts.scales || {}, legend: { live: true }, hooks: opts.hooks || {}, bands: opts.bands || [],
    cursor: { drag: { x: false, y: false } },
  };
  if (!opts.x) options.scales.x = { time: true };
  charts[key] = new uPlot(options, data, node);
  return charts[key];
}
new ResizeObserver(() => {
  for (const [key, chart] of Object.entries(charts)) {
    const node = chart.root.parentElement;
    if (node && node.clientWidth) chart.setSize({ width: chartWidth(node), height: chart.height });
  }
}).observe(document.body);

// -- Memory ----------------------------------------------------------------------
function memoryData() {
  const rows = state.rows, latest = state.latest || {};
  const t = rows.map((r) => r[0]);
  const flat = (value) => rows.map(() => value ?? null);
  const data = [t, rows.map((r) => r[1]), rows.map((r) => r[3]), rows.map((r) => r[4]), rows.map((r) => r[2]),
    flat(latest.caution_bytes), flat(latest.abort_bytes)];
  if (rows.some((r) => r[5] !== null)) data.push(rows.map((r) => r[5]));
  return data;
}
function guardMarksHook(u) {
  const ctx = u.ctx, [lo, hi] = [u.scales.x.min, u.scales.x.max];
  for (const mark of state.guard) {
    if (mark.t < lo || mark.t > hi) continue;
    const x = Math.round(u.valToPos(mark.t, "x", true));
    ctx.save();
    ctx.strokeStyle = mark.kind === "warn" ? css("--caution") : ["start", "end"].includes(mark.kind) ? css("--muted") : css("--abort");
    ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    ctx.restore();
  }
}
function memoryChart() {
  const data = memoryData();
  // The machine (left axis, GiB) and what the engines hold (right axis, its own scale:
  // a model of 80 MiB would be a flat line on a 24 GiB axis).
  const series = [
    { label: t("available"), stroke: css("--accent"), width: 2 },
    { label: t("engines resident"), stroke: css("--file"), width: 2, scale: "engines" },
    { label: t("engines anonymous"), stroke: css("--anon"), width: 1.5, scale: "engines" },
    { label: t("swap used"), stroke: css("--swap"), width: 1.5, scale: "engines" },
    { label: t("caution floor"), stroke: css("--caution"), dash: [6, 4], width: 1.5 },
    { label: t("abort floor"), stroke: css("--abort"), dash: [6, 4], width: 1.5 },
  ];
  if (data.length > 7) series.push({ label: t("GPU used"), stroke: css("--ok"), width: 1.5 });
  const engines = { ...axis(t("engines, swap"), (u, ticks) => ticks.map((v) => v >= GIB ? (v / GIB).toFixed(1) + "G" : (v / MIB).toFixed(0) + "M")),
    scale: "engines", side: 1, grid: { show: false } };
  makeChart("memory", $("mem-chart"), series, data, {
    hooks: { draw: [guardMarksHook] }, height: 260, axes: [engines],
    xIncrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600], xValues: (u, ticks) => ticks.map(clock),
    scales: { engines: { range: (u, lo, hi) => [0, Math.max(hi * 1.1, 64 * MIB)] } } });
}
function renderMemory() {
  const p = state.latest;
  if (!p) return;
  $("mem-available").textContent = bytes(p.available_bytes);
  $("mem-total").textContent = t("{share} % of {total}", { share: (100 * p.available_bytes / p.total_bytes).toFixed(1), total: bytes(p.total_bytes) });
  const level = $("mem-level");
  level.textContent = t(p.level); level.className = `figure level-${p.level}`;
  $("mem-reason").textContent = p.reason || t("above both floors");
  $("mem-caution").textContent = bytes(p.caution_bytes);
  $("mem-abort").textContent = bytes(p.abort_bytes);
  $("mem-floor").textContent = bytes(p.floor_bytes);
  $("mem-swap").textContent = bytes(p.swap_used_bytes);
  $("mem-swap-total").textContent = t("of {total}", { total: bytes(p.swap_total_bytes) });
  $("mem-psi").textContent = p.psi_some === null ? (p.macos_pressure || "–") : `${p.psi_some.toFixed(1)} / ${(p.psi_full || 0).toFixed(1)} %`;
  $("mem-held").textContent = bytes(p.held_bytes);
  renderFloorBar(p);
  renderEngines(p);
  renderGpus(p);
  const chart = charts.memory;
  const data = memoryData();
  if (!chart || chart.series.length !== data.length) memoryChart(); else chart.setData(data);
  replace($("mem-marks"), state.guard.slice(-5).reverse().map((m) =>
    h("li", {}, h("span", { class: `kind ${m.kind}` }, m.kind), `${clock(m.t)} `, m.message)));
}
function renderFloorBar(p) {
  const share = (n) => `${Math.max(0, Math.min(100, 100 * n / p.total_bytes)).toFixed(2)}%`;
  const used = p.total_bytes - p.available_bytes;
  replace($("mem-bar"), h("div", { class: "used", style: `width:${share(used)}`, title: t("in use {size}", { size: bytes(used) }) }),
    h("div", { class: "floor caution", style: `right:${share(p.caution_bytes)}`, title: t("caution floor {size}", { size: bytes(p.caution_bytes) }) }),
    h("div", { class: "floor abort", style: `right:${share(p.abort_bytes)}`, title: t("abort floor {size}", { size: bytes(p.abort_bytes) }) }));
}
function split(e) {
  const total = Math.max(1, (e.anon_bytes || 0) + (e.file_bytes || 0) + (e.swap_bytes || 0));
  const part = (cls, n) => h("span", { class: cls, style: `width:${(100 * (n || 0) / total).toFixed(1)}%` });
  return h("div", { class: "split", title: t("anonymous / file-backed / swapped") },
    part("anon", e.anon_bytes), part("file", e.file_bytes), part("swap", e.swap_bytes));
}
function renderEngines(p) {
  const rows = p.engines.length ? p.engines.map((e) => h("tr", {},
    h("td", {}, e.name), h("td", { class: "num" }, e.pid), h("td", { class: "num" }, e.processes),
    h("td", { class: "num" }, bytes(e.rss_bytes)), h("td", { class: "num" }, bytes(e.anon_bytes)),
    h("td", { class: "num" }, bytes(e.file_bytes)), h("td", { class: "num" }, bytes(e.swap_bytes)),
    h("td", {}, split(e))))
    : [h("tr", {}, h("td", { colspan: 8, class: "sub" }, t("no engine running")))];
  table($("mem-engines"), [[t("engine")], [t("pid"), "num"], [t("procs"), "num"], [t("resident"), "num"], [t("anonymous"), "num"],
    [t("file-backed"), "num"], [t("swapped"), "num"], [t("split")]], rows);
}
function renderGpus(p) {
  $("mem-gpus-box").hidden = !p.gpus.length;
  if (!p.gpus.length) return;
  table($("mem-gpus"), [[t("GPU")], [t("used"), "num"], [t("free"), "num"], [t("engines' share"), "num"]],
    p.gpus.map((g) => h("tr", {}, h("td", {}, g.index), h("td", { class: "num" }, bytes(g.used_bytes)),
      h("td", { class: "num" }, bytes(g.free_bytes)), h("td", { class: "num" }, bytes(g.process_used_bytes)))));
}

// -- Models ------------------------------------------------------------------------
let modelsView = null, loadedKey = "";
async function enterModels() {
  modelsView = await api("/dashboard/api/models");
  loadedKey = modelsKey(state.models);
  renderModels();
}
function modelsKey(models) { return models.map((m) => `${m.id}:${m.state}`).join(","); }
function liveModel(id) { return state.models.find((m) => m.id === id) || {}; }
function renderModels() {
  if (!modelsView) return;
  replace($("models-list"), modelsView.models.length ? modelsView.models.map(modelCard)
    : [h("p", { class: "sub" }, t("No model is served: this is a monitor (yoyu dashboard). Serve models with yoyu serve."))]);
  renderGraph(modelsView);
}
function modelCard(m) {
  const live = { ...m, ...liveModel(m.id) };
  const busy = live.state === "loading";
  const buttons = m.managed ? [
    h("button", { class: "small", "data-action": "load", "data-model": m.id, disabled: busy || live.state === "ready",
      onclick: () => act("load", m.id) }, t("Load")),
    h("button", { class: "small secondary", "data-action": "unload", "data-model": m.id, disabled: live.state !== "ready",
      onclick: () => act("unload", m.id) }, t("Unload"))] : [h("span", { class: "sub" }, t("loaded by {backend}", { backend: m.backend }))];
  const facts = [
    ["backend", m.remote ? t("{backend} (remote)", { backend: m.backend }) : m.backend],
    ["answering", t("{count} of {limit}", { count: live.running ?? 0, limit: live.max_concurrent ?? "–" })],
    ["waiting", t("{count} of {limit}", { count: live.waiting ?? 0, limit: live.max_queue ?? "–" })],
    ["TTL", m.ttl_s ? `${m.ttl_s} s` : t("never")], ["idle", idleText(live)],
    ["file", bytes(m.size_bytes)], ["plan needs", bytes(m.need_bytes)], ["verdict", m.verdict ? t(m.verdict) : "–"],
  ];
  return h("div", { class: "panel", "data-model-card": m.id },
    h("div", { class: "model-head" }, h("span", { class: "name" }, m.id),
      h("span", { class: `badge ${live.state}`, "data-state": live.state }, t(live.state === "failed" ? "load failed" : live.state || (m.loaded ? "ready" : "–"))),
      m.pinned ? h("span", { class: "badge" }, t("pinned")) : null, m.private ? h("span", { class: "badge" }, t("private")) : null,
      h("span", { class: "spacer" }), ...buttons),
    live.detail ? h("p", { class: "error" }, live.detail) : null,
    h("div", { class: "legend" }, facts.map(([k, v]) => h("span", {}, `${t(k)}: `, h("b", { "data-fact": k }, v)))),
    m.components.some((c) => c.planned_bytes !== null) ? componentsTable(m) : null,
    m.plan_error ? h("p", { class: "error" }, m.plan_error) : null);
}
function componentsTable(m) {
  const rows = m.components.map((c) => h("tr", {}, h("td", {}, c.name),
    h("td", { class: "num" }, bytes(c.planned_bytes)), h("td", { class: "num" }, bytes(c.measured_bytes)),
    h("td", { class: "num" }, c.planned_bytes !== null && c.measured_bytes !== null ? signed(c.measured_bytes - c.planned_bytes) : "–")));
  const node = h("table", { class: "components" });
  table(node, [[t("component")], [t("plan"), "num"], [t("engine measured"), "num"], [t("difference"), "num"]], rows);
  return h("div", { class: "scroll" }, node);
}
async function act(action, id) {
  showError("");
  document.querySelectorAll(`[data-model="${CSS.escape(id)}"]`).forEach((b) => { b.disabled = true; });
  try {
    const result = await post(`/dashboard/api/models/${encodeURIComponent(id)}/${action}`);
    if (action === "unload" && !result.unloaded) showError(t("{model} stayed loaded: {reason}", { model: id, reason: result.reason }));
  } catch (error) { showError(String(error.message || error)); }
  await enterModels();
}
function renderGraph(view) {
  const models = view.models.map((m) => m.id), routes = Object.keys(view.routes), aliases = Object.keys(view.aliases);
  const columns = [aliases, routes, models], step = 34, width = 720;
  const height = Math.max(1, ...columns.map((c) => c.length)) * step + 40;
  const xs = [20, 270, 520], where = {};
  columns.forEach((names, col) => names.forEach((name, row) => { where[name] = [xs[col], 40 + row * step]; }));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node); return node;
  };
  ["aliases", "routes", "models"].forEach((title, i) => add("text", { x: xs[i], y: 18, "font-weight": "bold" }, t(title)));
  const edge = (from, to, label) => {
    if (!where[from] || !where[to]) return;
    const [x1, y1, x2, y2] = [where[from][0] + 150, where[from][1] - 4, where[to][0] - 6, where[to][1] - 4];
    const bend = x2 - x1 > 300 ? 26 : 0;  // an alias straight to a model arcs under the routes
    add("path", { d: `M${x1},${y1} C${x1 + 60},${y1 + bend} ${x2 - 60},${y2 + bend} ${x2},${y2}`, fill: "none", "stroke-width": 1.5 });
    if (label) add("text", { x: where[to][0] - 22, y: where[to][1] - 8, "font-size": 10 }, label);
  };
  for (const [alias, target] of Object.entries(view.aliases)) edge(alias, target);
  for (const [route, chain] of Object.entries(view.routes)) chain.forEach((m, i) => edge(route, m, String(i + 1)));
  for (const [name, [x, y]] of Object.entries(where)) add("text", { x, y, class: "node" }, name);
  replace($("models-graph"), (aliases.length || routes.length) ? svg : h("p", { class: "sub" }, t("No routes or aliases: clients name the models themselves.")));
}
function idleText(live) { return live.idle_s === null || live.idle_s === undefined ? "–" : `${live.idle_s} s`; }
let renderedKey = "";
function updateModels() {
  if (!modelsView) return;
  if (modelsKey(state.models) !== loadedKey) { enterModels().catch((e) => showError(e.message)); return; }
  // Redraw only when something but the idle seconds changed (a redraw under a finger loses the tap).
  const key = JSON.stringify(state.models.map((m) => [m.id, m.state, m.running, m.waiting, m.detail]));
  if (key !== renderedKey) { renderedKey = key; renderModels(); return; }
  for (const m of state.models) {
    const fact = document.querySelector(`[data-model-card="${CSS.escape(m.id)}"] [data-fact=idle]`);
    if (fact) fact.textContent = idleText(m);
  }
}

// -- Runs ---------------------------------------------------------------------------
let runsList = [];
async function enterRuns() {
  runsList = (await api("/dashboard/api/runs")).runs;
  const a = $("runs-a"), b = $("runs-b"), keepA = a.value, keepB = b.value;
  const option = (r) => h("option", { value: r.id }, `#${r.id} ${r.model} (${r.mode}${r.label ? ", " + r.label : ""})`);
  replace(a, runsList.map(option));
  replace(b, h("option", { value: "" }, t("(none)")), runsList.map(option));
  if (keepA) a.value = keepA;
  if (keepB) b.value = keepB;
  table($("runs-table"), [[t("id"), "num"], [t("started")], [t("mode")], [t("model")], [t("ctx"), "num"], [t("peak RSS"), "num"], [t("state")]],
    runsList.map((r) => h("tr", {}, h("td", { class: "num" }, r.id), h("td", {}, when(r.started)), h("td", {}, r.mode),
      h("td", {}, r.model), h("td", { class: "num" }, r.n_ctx ?? "–"), h("td", { class: "num" }, bytes(r.peak_rss_bytes)),
      h("td", {}, r.error ? t("error: {message}", { message: r.error }) : r.state))));
  await showRuns();
}
async function showRuns() {
  const idA = $("runs-a").value, idB = $("runs-b").value;
  if (!idA) { replace($("runs-view"), h("p", { class: "sub" }, t("No stored runs yet: yoyu run, yoyu chat, yoyu soak and yoyu profile store theirs."))); return; }
  const a = await api(`/dashboard/api/runs/${idA}`);
  const b = idB ? await api(`/dashboard/api/runs/${idB}`) : null;
  const view = h("div", { id: "runs-detail" });
  replace($("runs-view"), view);
  view.append(h("h2", {}, b ? t("A/B: run #{a} against run #{b}", { a: a.id, b: b.id }) : t("Run #{id}: {model}", { id: a.id, model: a.model })));
  view.append(h("div", { class: "scroll" }, phasesTable(a, b)));
  view.append(h("h2", {}, t("Timeline (seconds from the load's start)")));
  const chartNode = h("div", { class: "chart", id: "runs-chart" });
  view.append(chartNode);
  runsChart(chartNode, a, b);
  for (const run of [a, b]) {
    if (run && run.soak) {
      view.append(h("h2", {}, t("Soak of run #{id}: {verdict}", { id: run.id, verdict: run.soak.verdict })));
      view.append(h("p", { class: "sub", "data-soak": run.id }, soakLine(run.soak)));
      const soakNode = h("div", { class: "chart" });
      view.append(soakNode);
      soakChart(soakNode, run);
    }
  }
}
const PHASE_FIGURES = [["process_rss_bytes", t("resident")], ["process_anon_bytes", t("anonymous")],
  ["process_file_bytes", t("file-backed")], ["process_swap_bytes", t("swapped")], ["system_available_bytes", t("available")], ["gpu_used_bytes", t("GPU used")]];
function phasesTable(a, b) {
  if (!b) return phaseMatrix(a);
  const names = Object.keys(a.phases);
  const head = [[t("phase")], [t("figure")], [`A #${a.id}`, "num"]];
  if (b) head.push([`B #${b.id}`, "num"], ["B − A", "num"]);
  const rows = [];
  for (const name of names) {
    for (const [key, label] of PHASE_FIGURES) {
      const va = a.phases[name] ? a.phases[name][key] : null, vb = b && b.phases[name] ? b.phases[name][key] : null;
      if ((va === null || va === undefined) && (vb === null || vb === undefined)) continue;
      const cells = [h("td", {}, name.replace("_", " ")), h("td", {}, label), h("td", { class: "num", "data-run": "a" }, bytes(va))];
      if (b) {
        const diff = va !== null && vb !== null && va !== undefined && vb !== undefined ? vb - va : null;
        const worse = key === "system_available_bytes" ? diff < 0 : diff > 0;  // less free, more used
        cells.push(h("td", { class: "num", "data-run": "b" }, bytes(vb)),
          h("td", { class: `num ${diff ? (worse ? "up" : "down") : ""}` }, signed(diff)));
      }
      rows.push(h("tr", { "data-phase": name, "data-figure": key }, cells));
    }
  }
  const node = h("table", { id: "runs-phases" });
  table(node, head, rows);
  return node;
}
function phaseMatrix(run) {
  // One run: a row a phase, a column a figure.
  const figures = PHASE_FIGURES.filter(([key]) => Object.values(run.phases).some((p) => p && p[key] !== null && p[key] !== undefined));
  const node = h("table", { id: "runs-phases" });
  table(node, [[t("phase")], [t("t (s)"), "num"], ...figures.map(([, label]) => [label, "num"])],
    Object.entries(run.phases).map(([name, p]) => h("tr", { "data-phase": name }, h("td", {}, name.replace("_", " ")),
      h("td", { class: "num" }, p ? p.t_s.toFixed(2) : "–"),
      figures.map(([key]) => h("td", { class: "num", "data-figure": key, "data-run": "a" }, p ? bytes(p[key]) : "–")))));
  return node;
}
function runsChart(node, a, b) {
  // Both runs on one time axis from their load's start: their sample times joined.
  const times = [...new Set([...a.timeline.t_s, ...(b ? b.timeline.t_s : [])])].sort((x, y) => x - y);
  const column = (run, key) => { const at = new Map(run.timeline.t_s.map((t, i) => [t, run.timeline[key][i]])); return times.map((t) => at.has(t) ? at.get(t) : null); };
  const series = [{ label: t("{run} resident", { run: `A #${a.id}` }), stroke: css("--accent"), width: 2, spanGaps: true },
    { label: t("{run} anonymous", { run: `A #${a.id}` }), stroke: css("--anon"), width: 1.5, spanGaps: true }];
  const data = [times, column(a, "rss_bytes"), column(a, "anon_bytes")];
  if (b) {
    series.push({ label: t("{run} resident", { run: `B #${b.id}` }), stroke: css("--caution"), width: 2, spanGaps: true },
      { label: t("{run} anonymous", { run: `B #${b.id}` }), stroke: css("--swap"), width: 1.5, spanGaps: true });
    data.push(column(b, "rss_bytes"), column(b, "anon_bytes"));
  }
  makeChart("runs", node, series, data, { x: { label: "s" }, scales: { x: { time: false } }, yValues: mib,
    xValues: seconds, hooks: { draw: [phaseMarks(a)] } });
}
const PHASE_MARKS = ["load_start", "load_end", "generation_start", "generation_end", "stabilized"];
function phaseMarks(run) {
  // The marks the phases are read at (run A's), as thin lines with their names.
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = css("--muted"); ctx.fillStyle = css("--muted");
    ctx.lineWidth = devicePixelRatio; ctx.font = `${10 * devicePixelRatio}px system-ui`;
    run.events.filter((e) => PHASE_MARKS.includes(e.kind)).forEach((event, i) => {
      const x = Math.round(u.valToPos(event.t_s, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      const y = u.bbox.top + (12 + 12 * (i % 4)) * devicePixelRatio;  // staggered: marks come close
      ctx.fillText(event.kind.replace("_", " "), x + 3 * devicePixelRatio, y);
    });
    ctx.restore();
  };
}
function soakLine(s) {
  const se = s.stderr_mib_per_min === null ? "?" : s.stderr_mib_per_min.toFixed(2);
  const slope = `${s.slope_mib_per_min >= 0 ? "+" : ""}${s.slope_mib_per_min.toFixed(2)}`;
  return `${t("{slope} ± {se} MiB/min over {turns} turns; band: ±{sigmas}σ of the slope.", { slope, se, turns: s.t_s.length, sigmas: s.sigmas })} ${s.reason}`;
}
function soakChart(node, run) {
  const s = run.soak;
  makeChart(`soak${run.id}`, node, [
    { label: t("anonymous + swapped"), stroke: css("--anon"), width: 0, points: { show: true, size: 6 } },
    { label: t("fit"), stroke: css("--accent"), width: 2 },
    { label: `−${s.sigmas}σ`, stroke: css("--muted"), dash: [4, 4], width: 1 },
    { label: `+${s.sigmas}σ`, stroke: css("--muted"), dash: [4, 4], width: 1 },
  ], [s.t_s, s.growth_bytes, s.fit_bytes, s.low_bytes, s.high_bytes], {
    x: { label: "s" }, scales: { x: { time: false } }, yValues: mib, height: 200,
    xValues: seconds,
    bands: [{ series: [4, 3], fill: "rgba(127, 127, 127, 0.18)" }],  // the slope's ±σ band, filled
  });
}

// -- Plan ---------------------------------------------------------------------------
let choicesLoaded = false;
async function enterPlan() {
  if (choicesLoaded) return;
  const choices = await api("/dashboard/api/plan/choices");
  choicesLoaded = true;
  replace($("plan-models"), [...choices.served.map((id) => h("option", { value: id }, t("served"))),
    ...choices.installed.map((m) => h("option", { value: m.path }, `${m.name} (${m.source}, ${bytes(m.size_bytes)})`)),
    ...choices.catalog.map((name) => h("option", { value: name }, t("catalog")))]);
  const presets = choices.presets.map((p) => h("option", { value: p.name, title: p.description }, p.name));
  replace($("plan-machine"), h("option", { value: "" }, t("this machine")), presets);
  replace($("plan-nodes"), choices.presets.map((p) => h("option", { value: p.name }, p.name)));
  if (!$("plan-model").value && choices.served.length) $("plan-model").value = choices.served[0];
  replace($("fit-machine"), h("option", { value: "" }, t("this machine")),
    choices.presets.map((p) => h("option", { value: p.name, title: p.description }, p.name)));
  replace($("fit-families"), choices.families.map((name) => h("option", { value: name })));
  replace($("fit-use"), h("option", { value: "" }, t("any")), choices.uses.map((use) => h("option", { value: use }, t(use))));
  fitEngine = choices.fit_engine;
  await rankFit();
}
// A "What fits here" row plans with the ranking's engine and free memory, until the form changes.
let planExtra = {};
$("plan-form").addEventListener("input", () => { planExtra = {}; });
$("plan-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const nodes = [...$("plan-nodes").selectedOptions].map((o) => o.value);
  const ctx = $("plan-ctx").value;
  const payload = { model: $("plan-model").value, machine: $("plan-machine").value || null, nodes, ...planExtra };
  if (ctx !== "") payload.ctx = Number(ctx);
  $("plan-go").disabled = true;
  try { renderPlan(await post("/dashboard/api/plan", payload)); }
  catch (error) { replace($("plan-view"), h("p", { class: "error", id: "plan-error" }, String(error.message || error))); }
  finally { $("plan-go").disabled = false; }
});
const PARTS = [["weights_bytes", t("weights"), "--accent"], ["kv_bytes", t("KV cache"), "--anon"], ["compute_bytes", t("compute"), "--file"],
  ["output_bytes", t("output"), "--swap"], ["engine_bytes", t("engine"), "--caution"], ["overhead_bytes", t("overhead"), "--other"]];
function renderPlan(plan) {
  const view = h("div", { id: "plan-result", "data-model": plan.model, "data-ctx": plan.ctx });
  const verdictClass = plan.verdict === "DOES_NOT_FIT" ? "level-abort" : plan.verdict === "FITS" ? "level-ok" : "level-caution";
  view.append(h("div", { class: "cards" },
    h("div", { class: "card" }, h("div", { class: "label" }, t("Verdict")), h("div", { class: `figure ${verdictClass}`, id: "plan-verdict", "data-verdict": plan.verdict }, t(plan.verdict))),
    h("div", { class: "card" }, h("div", { class: "label" }, t("Risk")), h("div", { class: "figure" }, t(plan.risk)), h("div", { class: "sub" }, plan.risk_reason)),
    h("div", { class: "card" }, h("div", { class: "label" }, t("Total")), h("div", { class: "figure", id: "plan-total" }, bytes(plan.totals.total_bytes))),
    h("div", { class: "card" }, h("div", { class: "label" }, t("GPU layers")), h("div", { class: "figure" }, `${plan.n_gpu_layers}/${plan.n_layers_total}`)),
    plan.predicted ? h("div", { class: "card" }, h("div", { class: "label" }, t("Predicted decode")), h("div", { class: "figure" }, `${plan.predicted.decode_tps} tok/s`), h("div", { class: "sub" }, plan.predicted.bound)) : null));
  view.append(h("p", { class: "sub" }, t("{model} on {machine} · ctx {ctx} · KV {kv}", { model: plan.model, machine: plan.machine, ctx: plan.ctx, kv: plan.kv_type })));
  view.append(h("h2", {}, t("Per device")), deviceBars(plan.devices));
  if (plan.nodes.length) view.append(h("h2", {}, t("Nodes")), deviceBars(plan.nodes.map((n) => ({ ...n, name: t("{name} ({role}, layers {first}-{last})", { name: n.name, role: n.role, first: n.first_layer, last: n.last_layer }) }))));
  for (const reason of plan.reasons) view.append(h("p", { class: "error" }, reason.message));
  if (plan.moves.length) {
    const node = h("table", { id: "plan-moves" });
    table(node, [[t("move")], [t("verdict")], [t("total"), "num"], [t("free after"), "num"]], plan.moves.map((m) => h("tr", {},
      h("td", {}, m.description), h("td", {}, t(m.resulting_verdict)), h("td", { class: "num" }, bytes(m.total_bytes)), h("td", { class: "num" }, bytes(m.free_after_bytes)))));
    view.append(h("h2", {}, t("Moves (and what each gives)")), h("div", { class: "scroll" }, node));
  }
  view.append(h("h2", {}, t("Launch settings")));
  for (const [target, text] of Object.entries(plan.emitted)) {
    const pre = h("pre", { "data-emit": target }, text);
    view.append(h("div", { class: "model-head" }, h("b", {}, target), h("span", { class: "spacer" }),
      h("button", { class: "small secondary", onclick: (e) => copy(pre, e.target) }, t("Copy"))), pre);
  }
  for (const note of plan.notes) view.append(h("p", { class: "sub" }, note));
  replace($("plan-view"), view);
}
function deviceBars(devices) {
  const legend = h("div", { class: "legend" }, PARTS.map(([, label, color]) => h("span", {}, h("i", { style: `background:var(${color})` }), label)),
    h("span", {}, h("i", { style: "background:var(--text)" }), t("may use")));
  return h("div", { class: "bars" }, legend, devices.map((d) => {
    const total = d.total_bytes || 0, scale = Math.max(total, d.usable_bytes || 0, 1);
    const parts = d.weights_bytes === undefined ? [h("span", { style: `width:${100 * total / scale}%;background:var(--accent)` })]
      : PARTS.map(([key, label, color]) => h("span", { title: `${label} ${bytes(d[key])}`, style: `width:${100 * (d[key] || 0) / scale}%;background:var(${color})` }));
    return h("div", { class: "bar-row", "data-device": d.name },
      h("div", { class: "sub" }, t("{name}: {total} of {usable} it may use, {free} free after", { name: `${d.name}${d.kind ? " (" + d.kind + ")" : ""}`,
        total: bytes(total), usable: bytes(d.usable_bytes), free: bytes(d.free_after_bytes) })),
      h("div", { class: "bar" }, parts, h("div", { class: "limit", style: `left:calc(${100 * (d.usable_bytes || 0) / scale}% - 2px)` })));
  }));
}
async function copy(pre, button) {
  try { await navigator.clipboard.writeText(pre.textContent); }
  catch { const range = document.createRange(); range.selectNodeContents(pre); getSelection().removeAllRanges(); getSelection().addRange(range); document.execCommand("copy"); }
  button.textContent = t("Copied");
  setTimeout(() => { button.textContent = t("Copy"); }, 1500);
}

// -- What fits here: yoyu fit's ranking of the catalog, on this machine or a preset ----------
const FIT_FIELDS = [["machine", "fit-machine"], ["family", "fit-family"], ["use", "fit-use"], ["min_ctx", "fit-min-ctx"],
  ["max_size", "fit-max-size"], ["free", "fit-free"], ["gpu_free", "fit-gpu-free"]];
const RISK_LEVEL = { safe: "level-ok", tight: "level-caution", caution: "level-caution", abort: "level-abort" };
let fitEngine = null, fitAsked = {}, fitAsks = 0;
$("fit-form").addEventListener("submit", (event) => { event.preventDefault(); rankFit(); });
$("fit-all").addEventListener("change", () => { if (state.fit) renderFit(state.fit); });
async function rankFit() {
  const query = new URLSearchParams(), ask = ++fitAsks;  // only the latest answer is shown
  for (const [name, id] of FIT_FIELDS) if ($(id).value.trim()) query.set(name, $(id).value.trim());
  if ($("fit-default-quant").checked) query.set("default_quant", "true");
  $("fit-go").disabled = true;
  try {
    const report = await api(`/dashboard/api/fit?${query}`);
    if (ask !== fitAsks) return;
    fitAsked = { machine: query.get("machine") || "", free: query.get("free"), gpu_free: query.get("gpu_free") };
    state.fit = report;
    renderFit(report);
  } catch (error) {
    if (ask !== fitAsks) return;
    state.fit = null;
    replace($("fit-view"), h("p", { class: "error", id: "fit-error" }, String(error.message || error)));
  } finally { if (ask === fitAsks) $("fit-go").disabled = false; }
}
function renderFit(report) {
  const rows = report.models.filter((m) => m.runs || $("fit-all").checked);
  const node = h("table", { id: "fit-table", class: "pick" });
  table(node, [[t("model")], [t("quant")], [t("where")], [t("ctx"), "num"], [t("decode tok/s"), "num"], [t("prefill tok/s"), "num"],
    [t("verdict")], [t("risk")], [t("memory needed"), "num"]], rows.map(fitRow));
  const summary = t("{runs} of {count} catalog models and quants run on {machine}; ctx: the largest that keeps the headroom; tok/s: predicted decode / prefill",
    { runs: report.runs, count: report.models.length, machine: report.machine });
  const none = report.models.length ? t("None fits here: loosen the filters, give more free memory, or show those that do not fit.")
    : t("No catalog model matches these filters.");
  replace($("fit-view"), h("p", { class: "sub", id: "fit-summary" }, summary),
    rows.length ? [h("p", { class: "sub" }, t("Click a row to plan it.")), h("div", { class: "scroll" }, node)]
      : h("p", { class: "sub", id: "fit-none" }, none));
}
function fitRow(m) {
  const open = () => openPlan(m), dash = "–";
  return h("tr", { "data-model": m.model, title: m.reason, tabindex: 0, onclick: open, onkeydown: (e) => { if (e.key === "Enter") open(); } },
    h("td", {}, m.model), h("td", {}, m.quant), h("td", { class: m.runs ? null : "level-abort" }, placement(m)),
    h("td", { class: "num" }, m.runs ? tokens(m.ctx) : dash),
    h("td", { class: "num" }, m.runs ? m.decode_tps.toFixed(1) : dash), h("td", { class: "num" }, m.runs ? m.prefill_tps.toFixed(0) : dash),
    h("td", {}, t(m.verdict)), h("td", { class: RISK_LEVEL[m.risk] }, t(m.risk)), h("td", { class: "num" }, m.runs ? bytes(m.total_bytes) : dash));
}
function placement(m) {
  // As plan/ranking.py's placement_words says it, in the reader's language.
  if (!m.runs) return t("does not fit");
  if (m.verdict === "CPU_ONLY") return t("CPU only");
  if (m.n_cpu_moe) return t("MoE experts of {cpu}/{blocks} blocks on the CPU", { cpu: m.n_cpu_moe, blocks: m.n_layers_total - 1 });
  if (m.n_gpu_layers < m.n_layers_total) return t("{gpu}/{total} layers on the GPU", { gpu: m.n_gpu_layers, total: m.n_layers_total });
  return t("all on the GPU");
}
function tokens(count) { return count >= 1024 && count % 1024 === 0 ? `${count / 1024}k` : String(count); }
function openPlan(m) {
  // The Plan view for the row: its model on the same machine, at the context the row found.
  $("plan-model").value = m.model;
  $("plan-machine").value = fitAsked.machine;
  for (const option of $("plan-nodes").options) option.selected = false;
  $("plan-ctx").value = m.runs ? m.ctx : "";
  planExtra = { engine: fitEngine, free: fitAsked.free, gpu_free: fitAsked.gpu_free };
  $("plan-form").requestSubmit();
  window.scrollTo({ top: 0 });  // the form and the plan it opens head the page
}

// -- Guard log ---------------------------------------------------------------------------
let guardSeen = -1;
const BYTE_FLOORS = ["abort", "caution", "swap_growth", "gpu_free"];
async function enterGuard() {
  const records = (await api("/dashboard/api/guard")).records;
  guardSeen = state.guardCount;
  replace($("guard-list"), records.length ? records.map(guardEntry) : [h("p", { class: "sub" }, t("No decision logged yet."))]);
}
function guardEntry(r) {
  const samples = h("table", {});
  table(samples, [[t("time")], [t("available"), "num"], [t("swap used"), "num"], [t("PSI some/full"), "num"], [t("tree resident"), "num"], [t("anonymous"), "num"], [t("swapped"), "num"]],
    r.samples.map((s) => h("tr", {}, h("td", {}, s.t ? clock(s.t) : "–"), h("td", { class: "num" }, bytes(s.available_bytes)),
      h("td", { class: "num" }, bytes(s.swap_used_bytes)), h("td", { class: "num" }, s.psi_some === null ? "–" : `${s.psi_some}/${s.psi_full}`),
      h("td", { class: "num" }, bytes(s.rss_bytes)), h("td", { class: "num" }, bytes(s.anon_bytes)), h("td", { class: "num" }, bytes(s.swap_bytes)))));
  // threshold and figure are bytes for the memory floors, percent for PSI, a word on a Mac
  const inBytes = (k) => k.endsWith("_bytes") || (["threshold", "figure"].includes(k) && BYTE_FLOORS.includes(r.detail.floor));
  const detail = Object.entries(r.detail).filter(([, v]) => v !== null).map(([k, v]) =>
    h("span", {}, `${k}: `, h("b", {}, inBytes(k) && typeof v === "number" ? bytes(v) : JSON.stringify(v))));
  return h("details", { "data-kind": r.kind },
    h("summary", {}, h("span", { class: `kind ${r.kind}` }, r.kind), `${when(r.t)} · ${r.message}`),
    h("p", { class: "sub" }, [r.target, t("guard pid {pid}", { pid: r.guard_pid }), ...(r.pids.length ? [t("pids {pids}", { pids: r.pids.join(", ") })] : [])].join(" · ")),
    h("div", { class: "legend" }, detail),
    r.samples.length ? h("div", { class: "scroll" }, samples) : h("p", { class: "sub" }, t("no samples kept with this record")));
}

// -- pages and the stream -----------------------------------------------------------------
const PAGES = {
  memory: { enter: async () => { memoryChart(); renderMemory(); }, update: renderMemory },
  models: { enter: enterModels, update: updateModels },
  runs: { enter: enterRuns, update: () => {} },
  plan: { enter: enterPlan, update: () => {} },
  guard: { enter: enterGuard, update: () => { if (state.guardCount !== guardSeen) enterGuard().catch((e) => showError(e.message)); } },
};
async function route() {
  const page = (location.hash || "#memory").slice(1);
  state.page = PAGES[page] ? page : "memory";
  for (const name of Object.keys(PAGES)) $(`page-${name}`).hidden = name !== state.page;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === state.page));
  showError("");
  try { await PAGES[state.page].enter(); } catch (error) { showError(String(error.message || error)); }
  document.body.dataset.page = state.page;
}
function onUpdate(update, reset) {
  if (reset) { state.rows = []; state.guard = []; }
  state.rows.push(...update.rows);
  if (state.rows.length > HISTORY) state.rows.splice(0, state.rows.length - HISTORY);
  if (update.latest) state.latest = update.latest;
  state.guard.push(...update.guard);
  state.guardCount = (reset ? 0 : state.guardCount || 0) + update.guard.length;
  if (state.guard.length > 200) state.guard.splice(0, state.guard.length - 200);
  state.models = update.models;
  state.seq = update.seq;
  if (PAGES[state.page]) PAGES[state.page].update();
}
function connect() {
  const source = new EventSource("/dashboard/events");
  const live = $("live");
  source.addEventListener("hello", (event) => {
    const update = JSON.parse(event.data);
    state.keyRequired = update.key_required;
    $("logout").hidden = !update.key_required;
    live.textContent = t("live"); live.className = "live on";
    onUpdate(update, true);
  });
  source.addEventListener("tick", (event) => onUpdate(JSON.parse(event.data), false));
  source.onerror = () => { live.textContent = t("reconnecting"); live.className = "live off"; };
}
$("runs-a").addEventListener("change", () => showRuns().catch((e) => showError(e.message)));
$("runs-b").addEventListener("change", () => showRuns().catch((e) => showError(e.message)));
$("logout").addEventListener("click", async () => { await post("/dashboard/logout"); location.assign("/login"); });
window.addEventListener("hashchange", route);
connect();
route();
