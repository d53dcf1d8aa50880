// The Clickwatch dashboard: every 2 s it reads /metrics (the Prometheus exposition, the one
// source of every number shown) and /api/dashboard (latest alerts, alerts per minute, top
// entities, reload history), and redraws. No framework; uPlot draws the two charts.
"use strict";

const REFRESH_MS = 2000;

// Errors are counted on the page (`data-errors`), so a browser test can see them.
function countError() {
  document.body.dataset.errors = String(Number(document.body.dataset.errors || 0) + 1);
}
window.addEventListener("error", countError);
window.addEventListener("unhandledrejection", countError);
const HISTORY = 150; // points kept in the rate chart (5 minutes at 2 s)

// --- the Prometheus text format --------------------------------------------------------
function parseMetrics(text) {
  const samples = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (raw.startsWith("#") || raw.trim() === "") continue;
    const m = line.exec(raw);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(label)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

const pick = (samples, name) => samples.filter((s) => s.name === name);
const one = (samples, name) => pick(samples, name).reduce((a, s) => a + s.value, 0);
const byLabel = (samples, name, key) => {
  const out = new Map();
  for (const s of pick(samples, name)) out.set(s.labels[key], (out.get(s.labels[key]) || 0) + s.value);
  return out;
};
const pluginKey = (s) => `${s.labels.plugin}@${s.labels.version}`;

// p99 of a histogram from its cumulative buckets: the smallest bound holding 99 % of the count.
function p99(samples, name, key) {
  const buckets = pick(samples, `${name}_bucket`).filter((s) => pluginKey(s) === key);
  const count = pick(samples, `${name}_count`).filter((s) => pluginKey(s) === key).reduce((a, s) => a + s.value, 0);
  if (!count) return null;
  buckets.sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
  for (const b of buckets) if (b.value >= 0.99 * count) return Number(b.labels.le);
  return Infinity;
}

// --- formatting ------------------------------------------------------------------------
const fmt = (n) => (n === null || n === undefined || Number.isNaN(n) ? "–" : Math.round(n).toLocaleString("en-US"));
const fmtRate = (n) => (n === null ? "–" : n >= 100 ? fmt(n) : n.toFixed(1));
const fmtBytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const fmtSeconds = (s) => (s === null ? "–" : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`);
const fmtTime = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

function fillTable(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.innerHTML = rows.length
    ? rows.map((cells) => `<tr>${cells.map((c) => (typeof c === "object" && c !== null ? `<td class="${c.cls || ""}">${esc(c.text)}</td>` : `<td>${esc(c)}</td>`)).join("")}</tr>`).join("")
    : `<tr><td class="muted" colspan="20">none yet</td></tr>`;
  body.dataset.rows = String(rows.length);
}
const num = (n) => ({ text: fmt(n), cls: "num" });

// --- charts ----------------------------------------------------------------------------
const palette = ["#2a5bd7", "#d9822b", "#2f9e44", "#c92a2a", "#7048e8", "#0c8599", "#e64980", "#5c940d"];
const rateData = [[], [], []];
let rateChart = null;
let alertChart = null;
let alertDetectors = "";

function chartWidth(el) {
  return Math.max(320, el.clientWidth - 8);
}

function drawRates(now, inRate, outRate) {
  const el = document.getElementById("chart-rate");
  rateData[0].push(now / 1000);
  rateData[1].push(inRate);
  rateData[2].push(outRate);
  for (const s of rateData) if (s.length > HISTORY) s.shift();
  if (!rateChart) {
    rateChart = new uPlot({
      width: chartWidth(el), height: 200,
      series: [{}, { label: "in", stroke: palette[0], width: 2 }, { label: "processed", stroke: palette[2], width: 2 }],
      axes: [{}, { size: 60 }],
    }, rateData, el);
  } else {
    rateChart.setData(rateData);
  }
  el.dataset.points = String(rateData[0].length);
}

function drawAlerts(minutes) {
  const el = document.getElementById("chart-alerts");
  const detectors = [...new Set(minutes.flatMap((m) => Object.keys(m.by_detector)))].sort();
  const data = [minutes.map((m) => m.minute_ms / 1000)];
  for (const d of detectors) data.push(minutes.map((m) => m.by_detector[d] || 0));
  const key = detectors.join(",");
  if (!alertChart || key !== alertDetectors) {
    if (alertChart) alertChart.destroy();
    alertDetectors = key;
    alertChart = new uPlot({
      width: chartWidth(el), height: 200,
      series: [{}, ...detectors.map((d, i) => ({ label: d, stroke: palette[i % palette.length], fill: palette[i % palette.length] + "33", width: 2, paths: uPlot.paths.stepped({ align: 1 }) }))],
      axes: [{}, { size: 50 }],
    }, data, el);
  } else {
    alertChart.setData(data);
  }
  el.dataset.points = String(minutes.length);
  el.dataset.alerts = String(minutes.reduce((a, m) => a + Object.values(m.by_detector).reduce((x, y) => x + y, 0), 0));
}

// --- one refresh -----------------------------------------------------------------------
let previous = null; // { at, samples }

function render(samples, dash, at) {
  const total = (name) => one(samples, name);
  const counters = {
    "events-in": "clickwatch_events_in_total",
    "events-processed": "clickwatch_events_processed_total",
    "events-invalid": "clickwatch_events_invalid_total",
    "events-late": "clickwatch_events_late_total",
    "alerts-total": "clickwatch_alerts_total",
    "dead-letters": "clickwatch_dead_letters_total",
    "raw-rows": "clickwatch_raw_rows_total",
    "aggregate-rows": "clickwatch_aggregate_rows_total",
  };
  for (const [id, name] of Object.entries(counters)) {
    setText(id, fmt(total(name)));
    document.getElementById(id).dataset.value = String(total(name));
  }
  const ready = total("clickwatch_ready") === 1;
  const pill = document.getElementById("ready");
  pill.textContent = ready ? "ready" : "not ready";
  pill.className = `pill ${ready ? "ok" : "bad"}`;

  const dt = previous ? (at - previous.at) / 1000 : 0;
  const rate = (name, filter) => {
    if (!previous || dt <= 0) return null;
    const sum = (ss) => pick(ss, name).filter(filter || (() => true)).reduce((a, s) => a + s.value, 0);
    return Math.max(0, (sum(samples) - sum(previous.samples)) / dt);
  };
  const inRate = rate("clickwatch_events_in_total");
  const outRate = rate("clickwatch_events_processed_total");
  setText("rate-in", fmtRate(inRate));
  setText("rate-out", fmtRate(outRate));
  setText("arrow-in", fmtRate(inRate));
  setText("arrow-out", fmtRate(outRate));
  if (inRate !== null) drawRates(at, inRate, outRate);

  // Stages and where the backlog sits.
  const lags = pick(samples, "clickwatch_consumer_lag_records");
  const lagTotal = lags.reduce((a, s) => a + s.value, 0);
  setText("lag-total", fmt(lagTotal));
  setText("partitions", fmt(total("clickwatch_partitions_assigned_total")));
  setText("plugins-loaded", fmt(total("clickwatch_plugins_loaded")));
  const eventLags = pick(samples, "clickwatch_event_time_lag_seconds").map((s) => s.value);
  setText("event-lag", eventLags.length ? fmtSeconds(Math.max(...eventLags)) : "–");
  const backlog = total("clickwatch_sink_backlog");
  setText("sink-backlog", fmt(backlog));
  setText("sink-retries", fmt(total("clickwatch_sink_retries_total")));
  const stages = document.querySelectorAll(".stage");
  stages[0].classList.toggle("backlog", lagTotal > 10000);
  stages[2].classList.toggle("backlog", backlog > 2);

  fillTable("lag-table", lags
    .sort((a, b) => a.labels.topic.localeCompare(b.labels.topic) || Number(a.labels.partition) - Number(b.labels.partition))
    .map((s) => [s.labels.topic, num(Number(s.labels.partition)), num(s.value)]));
  const lagByTask = new Map(pick(samples, "clickwatch_event_time_lag_seconds").map((s) => [s.labels.task, s.value]));
  fillTable("watermark-table", pick(samples, "clickwatch_watermark_seconds")
    .filter((s) => s.value > 0)
    .map((s) => [s.labels.task, fmtTime(s.value * 1000), fmtSeconds(lagByTask.get(s.labels.task) ?? null)]));

  // Plugins: one row per version that ran (live first).
  const keyed = (name) => {
    const m = new Map();
    for (const s of pick(samples, name)) m.set(pluginKey(s), (m.get(pluginKey(s)) || 0) + s.value);
    return m;
  };
  const live = keyed("clickwatch_plugin_live");
  const quarantined = keyed("clickwatch_plugin_quarantined");
  const cols = ["snapshot_bytes", "memory_bytes", "memory_cap_bytes", "calls_total", "events_total", "alerts_total", "rows_total", "failures_total", "restarts_total", "quarantines_total"];
  const values = Object.fromEntries(cols.map((c) => [c, keyed(`clickwatch_plugin_${c}`)]));
  const keys = [...live.keys()].sort((a, b) => (live.get(b) - live.get(a)) || a.localeCompare(b));
  fillTable("plugin-table", keys.map((k) => {
    const [name, version] = k.split("@");
    const v = (c) => values[c].get(k) || 0;
    const status = quarantined.get(k) ? "quarantined" : live.get(k) ? "live" : "retired";
    const p = p99(samples, "clickwatch_plugin_batch_seconds", k);
    return [name, version, { text: status, cls: `status-${status}` }, fmtBytes(v("snapshot_bytes")),
      `${fmtBytes(v("memory_bytes"))} / ${fmtBytes(v("memory_cap_bytes"))}`, num(v("calls_total")), num(v("events_total")),
      num(v("alerts_total")), num(v("rows_total")), p === null ? "–" : p === Infinity ? "> 5 s" : `≤ ${(p * 1000).toPrecision(2)} ms`,
      num(v("failures_total")), num(v("restarts_total")), num(v("quarantines_total"))];
  }));
  fillTable("history-table", dash.plugin_history.slice().reverse().map((h) => [fmtTime(h.at_ms), h.plugin || "?", h.change,
    h.from || "", h.to || "", h.restored === null || h.restored === undefined ? "" : h.restored ? "yes" : "no (fresh state)",
    h.reason ? `${h.file}: ${h.reason}` : h.file]));

  // Detection.
  drawAlerts(dash.alerts_per_minute);
  fillTable("alert-table", dash.recent_alerts.slice(0, 20).map((a) => [fmtTime(a.time_ms), a.detector, a.kind,
    { text: a.severity, cls: `sev-${a.severity}` }, { text: `${a.entity_type} ${a.entity}`, cls: "entity" }, a.score.toFixed(2)]));
  fillTable("entity-table", dash.top_entities.map((e) => [e.entity_type, { text: e.entity, cls: "entity" }, num(e.alerts)]));
  setText("entities-capped", dash.entities_capped ? "counted over the first 10 000 entities seen" : "");

  // Sinks.
  const written = byLabel(samples, "clickwatch_sink_written_total", "sink");
  const retries = byLabel(samples, "clickwatch_sink_write_retries_total", "sink");
  const rejected = byLabel(samples, "clickwatch_sink_rejected_total", "sink");
  fillTable("sink-table", [...written.keys()].sort().map((sink) => [sink, num(written.get(sink)),
    num(rate("clickwatch_sink_written_total", (s) => s.labels.sink === sink)), num(retries.get(sink) || 0), num(rejected.get(sink) || 0)]));
  const reasons = byLabel(samples, "clickwatch_dead_letter_reasons_total", "reason");
  fillTable("dead-table", [...reasons.entries()].sort((a, b) => b[1] - a[1]).map(([r, n]) => [r, num(n)]));

  setText("updated", new Date(at).toLocaleTimeString());
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes) + 1);
  previous = { at, samples };
}

async function refresh() {
  try {
    const [metrics, dash] = await Promise.all([
      fetch("/metrics").then((r) => { if (!r.ok) throw new Error(`/metrics: ${r.status}`); return r.text(); }),
      fetch("/api/dashboard").then((r) => { if (!r.ok) throw new Error(`/api/dashboard: ${r.status}`); return r.json(); }),
    ]);
    render(parseMetrics(metrics), dash, Date.now());
  } catch (error) {
    const pill = document.getElementById("ready");
    pill.textContent = "host unreachable";
    pill.className = "pill bad";
    countError();
    console.warn("dashboard refresh failed:", error.message);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
