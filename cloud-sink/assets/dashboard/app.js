// cloud-sink fleet dashboard. Polls the sink's JSON API every 5 s and draws the
// gateway table, sink counters, devices, one device's series (inline SVG) with
// anomaly and escalation markers, its log templates per window and escalations.
//
// Every value from the sink goes into the page as text (textContent, SVG
// attributes), never parsed as markup: device names and log lines come from the
// field. No framework, no external file; the sink's CSP forbids inline script.
import { drawChart, num, utc } from "./chart.js";

const REFRESH_MS = 5000;
const FETCH_TIMEOUT_MS = 4000;
const SERIES_LIMIT = 5000;
const TEMPLATE_SERIES_SHOWN = 15;
const TEMPLATE_ROWS_SHOWN = 100;
const ESCALATIONS_FETCHED = 5000;
const ESCALATIONS_SHOWN = 100;
// Reject reasons summed as "Rejected"; the others have their own column.
const OWN_COLUMN = ["late", "duplicate", "rolled_up", "outbox_full", "corrupt_record", "escalation_over_budget"];
// The agent's own health counts arrive as counters under this prefix.
const HEALTH = "agent.";
// Health counts that mean something went wrong (starts, connects, compactions
// and held milliseconds are shown on hover only).
const FAULTS = ["mqtt_errors", "mqtt_tls_failures", "mqtt_subscribe_refused", "uplink_failures",
  "uplink_unauthorized", "uplink_rate_limited", "uplink_conflicts", "ingest_holds"];
const BAD_OUTCOMES = ["conflict", "unauthorized", "forbidden", "rate_limited", "too_large", "malformed", "store_error"];

const state = {
  devices: [],       // last /v1/devices answer
  device: null,      // JSON [gateway, device] of the selected device
  metric: null,      // selected series
  span: 3 * 3600e3,  // ms before the newest window; 0 = everything
  lastOk: null,      // Date of the last complete refresh
  deviceRun: 0,      // latest per-device refresh (older answers are dropped)
  chart: null,       // last chart data, redrawn on resize
};

const $ = (id) => document.getElementById(id);

// ---------- DOM helpers (text only) ----------

function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function cell(text, cls, title) {
  const c = el("td", cls, text);
  if (title) c.title = title;
  return c;
}

function show(id, visible) { $(id).hidden = !visible; }

// ---------- formatting ----------

const int = (n) => (Number(n) || 0).toLocaleString("en-US");
function bytes(n) {
  n = Number(n) || 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}
const pct = (part, whole) => (whole > 0 ? (100 * part / whole).toFixed(part / whole < 0.1 ? 2 : 1) + " %" : "—");
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return s + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

// ---------- fetching ----------

async function getJson(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined) q.set(k, String(v));
  const url = q.toString() ? path + "?" + q : path;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    const res = await fetch(url, { cache: "no-store", signal: abort.signal });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error(path + ": HTTP " + res.status + (body && body.error ? " " + body.error : ""));
    return body;
  } catch (e) {
    if (e.name === "AbortError") throw new Error(path + ": no answer in " + FETCH_TIMEOUT_MS / 1000 + " s");
    throw e.message.startsWith(path) ? e : new Error(path + ": " + e.message);
  } finally {
    clearTimeout(timer);
  }
}

// ---------- status ----------

function setOk() {
  state.lastOk = new Date();
  const s = $("status");
  s.dataset.state = "ok";
  s.dataset.updated = String(state.lastOk.getTime());
  s.textContent = "last updated " + state.lastOk.toLocaleTimeString();
  show("error-banner", false);
}

function setError(err) {
  const s = $("status");
  s.dataset.state = "error";
  s.textContent = "update failed " + new Date().toLocaleTimeString();
  const since = state.lastOk ? "showing data from " + state.lastOk.toLocaleTimeString() : "no data yet";
  $("error-banner").textContent = "Cannot reach the sink (" + (err && err.message ? err.message : err) + "); " + since + ". Retrying every " + REFRESH_MS / 1000 + " s.";
  show("error-banner", true);
}

// ---------- fleet, sink, devices ----------

function renderHealth(health) {
  $("sink-version").textContent = "cloud-sink " + (health.version || "?");
  const items = [];
  for (const [k, v] of Object.entries(health.counters || {})) {
    items.push(counter(k.replace(/_/g, " "), int(v), BAD_OUTCOMES.includes(k) && v > 0 ? "bad" : ""));
  }
  for (const [k, v] of Object.entries(health.teacher || {})) items.push(counter("teacher " + k.replace(/_/g, " "), int(v)));
  $("health-counters").replaceChildren(...items);
}

function counter(label, value, cls) {
  return el("span", "counter", label + " ", el("b", cls, value));
}

function renderFleet(gateways, devices, agreements) {
  const rows = gateways.map((g, i) => {
    const c = g.counters || {};
    let rejected = 0;
    const parts = [];
    const health = {};
    for (const [k, v] of Object.entries(c)) {
      if (k.startsWith(HEALTH)) health[k.slice(HEALTH.length)] = v;
      else if (!OWN_COLUMN.includes(k)) { rejected += v; parts.push(k + " " + v); }
    }
    const mine = devices.filter((d) => d.gateway === g.id);
    const judged = mine.reduce((a, d) => a + d.judged, 0);
    const alarms = mine.reduce((a, d) => a + d.alarms, 0);
    const escalated = mine.reduce((a, d) => a + d.escalations, 0);
    const agr = agreements[i] && agreements[i].overall;
    const flag = (n) => (n > 0 ? "num bad" : "num");
    const tr = el("tr", null,
      cell(g.id, "mono"),
      cell(ago(g.last_seen_ms), null, utc(g.last_seen_ms) + " UTC" +
        (g.last_batch ? "; last batch: epoch " + g.last_batch.epoch + ", seq " + g.last_batch.seq : "")),
      cell(int(g.batches), "num"),
      cell(int(g.windows), "num"),
      cell(int(rejected), rejected > 0 ? "num warn" : "num", parts.join(", ") || "none"),
      cell(int(c.late), c.late > 0 ? "num warn" : "num"),
      cell(int(c.duplicate), "num"),
      cell(int(c.rolled_up), c.rolled_up > 0 ? "num warn" : "num"),
      cell(int(c.outbox_full), flag(c.outbox_full)),
      cell(int(c.corrupt_record), flag(c.corrupt_record)),
      cell(int(mine.length), "num"),
      cell(int(alarms), "num"),
      cell(int(escalated), "num"),
      cell(pct(escalated, judged), "num", int(escalated) + " of " + int(judged) + " rows judged"),
      cell(int(c.escalation_over_budget), "num"),
      cell(agr && agr.judged > 0 ? pct(agr.agree, agr.judged) : "—", "num",
        agr ? int(agr.agree) + " agree, " + int(agr.disagree) + " disagree, " + int(agr.escalations - agr.judged) + " not judged" : ""),
      backlogCell(g.gauges || {}, g.gauges_ms),
      healthCell(health));
    tr.dataset.gateway = g.id;
    return tr;
  });
  $("fleet-table").tBodies[0].replaceChildren(...rows);
  show("fleet-empty", rows.length === 0);
  show("fleet-table", rows.length > 0);
}

// The gateway's outbox as its newest batch reported it: batches waiting, and
// on hover bytes against the budget, disk against the cap, open windows, uptime.
function backlogCell(gauges, at) {
  if (gauges.outbox_batches === undefined) return cell("—", "num", "not reported by this agent");
  const budget = gauges.outbox_budget_bytes || 0;
  const full = budget > 0 ? gauges.outbox_bytes / budget : 0;
  const title = [
    bytes(gauges.outbox_bytes) + " of a " + bytes(budget) + " outbox budget",
    gauges.store_disk_bytes !== undefined ? "store on disk " + bytes(gauges.store_disk_bytes) + " of " + bytes(gauges.store_cap_bytes) : null,
    "open windows " + int(gauges.open_windows),
    "agent up " + int(gauges.uptime_s) + " s",
    "reported " + ago(at),
  ].filter(Boolean).join("; ");
  return cell(int(gauges.outbox_batches), full > 0.5 ? "num warn" : "num", title);
}

// Faults the agent counted about itself (MQTT, uplink, ingest holds); every
// health count on hover.
function healthCell(health) {
  const faults = FAULTS.reduce((a, k) => a + (health[k] || 0), 0);
  const title = Object.entries(health).map(([k, v]) => k + " " + int(v)).join(", ");
  return cell(int(faults), faults > 0 ? "num warn" : "num", title || "nothing counted yet");
}

const keyOf = (d) => JSON.stringify([d.gateway, d.device]);
const selected = () => state.devices.find((d) => keyOf(d) === state.device) || null;

function renderDevices(devices) {
  const rows = devices.map((d) => {
    const tr = el("tr", "selectable" + (keyOf(d) === state.device ? " selected" : ""),
      cell(d.gateway, "mono"), cell(d.device, "mono"), cell(utc(d.last_end_ms)),
      cell(int(Object.keys(d.metrics).length), "num"), cell(int(d.windows), "num"),
      cell(int(d.judged), "num"), cell(int(d.alarms), d.alarms > 0 ? "num warn" : "num"),
      cell(int(d.anomalous_windows), d.anomalous_windows > 0 ? "num bad" : "num"),
      cell(int(d.escalations), "num"), cell(int(d.log_lines), "num"));
    tr.dataset.device = d.device;
    tr.addEventListener("click", () => selectDevice(keyOf(d)));
    return tr;
  });
  $("devices-table").tBodies[0].replaceChildren(...rows);
  show("devices-empty", rows.length === 0);
  show("devices-table", rows.length > 0);
}

// ---------- pickers ----------

function metricOrder(d) {
  const rank = (name) => {
    const m = d.metrics[name];
    if (m.template) return 3;
    if (m.judgement) return 1;
    return name.startsWith("log.") ? 2 : 0;
  };
  return Object.keys(d.metrics).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function setOptions(select, options, value) {
  const sig = JSON.stringify(options);
  if (select.dataset.sig !== sig) {
    select.replaceChildren(...options.map(([v, label]) => {
      const o = el("option", null, label);
      o.value = v;
      return o;
    }));
    select.dataset.sig = sig;
  }
  select.value = value ?? "";
}

// The device shown first: the one with the most anomalous windows, then the most windows.
function busiest(devices) {
  return devices.reduce((best, d) =>
    d.anomalous_windows > best.anomalous_windows ||
    (d.anomalous_windows === best.anomalous_windows && d.windows > best.windows) ? d : best);
}

function syncPickers() {
  if (!selected() && state.devices.length > 0) state.device = keyOf(busiest(state.devices));
  const d = selected();
  if (!d) state.device = null;
  setOptions($("pick-device"), state.devices.map((x) => [keyOf(x), x.gateway + " / " + x.device]), state.device);
  const metrics = d ? metricOrder(d) : [];
  if (!metrics.includes(state.metric)) state.metric = metrics[0] || null;
  setOptions($("pick-metric"), metrics.map((m) => {
    const s = d.metrics[m];
    const kind = s.judgement ? " (verdicts)" : s.template ? " (template)" : "";
    return [m, m + kind];
  }), state.metric);
  $("pick-span").value = String(state.span);
  saveHash();
}

function selectDevice(key) {
  state.device = key;
  state.metric = null;
  renderDevices(state.devices);
  syncPickers();
  refreshDevice().catch(setError);
}

function saveHash() {
  const d = selected();
  const q = new URLSearchParams();
  if (d) { q.set("gateway", d.gateway); q.set("device", d.device); }
  if (state.metric) q.set("metric", state.metric);
  q.set("span", String(state.span));
  history.replaceState(null, "", "#" + q);
}

function loadHash() {
  const q = new URLSearchParams(location.hash.slice(1));
  if (q.get("device")) state.device = JSON.stringify([q.get("gateway") || "", q.get("device")]);
  if (q.get("metric")) state.metric = q.get("metric");
  const span = Number(q.get("span"));
  if (Number.isFinite(span) && span >= 0 && q.has("span")) state.span = span;
}

// ---------- one device ----------

function seriesOf(d, metric, from) {
  return getJson("/v1/series", { gateway: d.gateway, device: d.device, metric, from, limit: SERIES_LIMIT });
}

async function refreshDevice() {
  const run = ++state.deviceRun;
  const d = selected();
  if (!d || !state.metric || !d.metrics[state.metric]) {
    drawChart(null);
    renderTemplates([]);
    renderEscalations(null, null);
    return;
  }
  const m = d.metrics[state.metric];
  const from = state.span > 0 ? m.last_start_ms + m.last_width_ms - state.span : null;
  const deviceFrom = state.span > 0 ? d.last_end_ms - state.span : null;
  const judgementNames = Object.keys(d.metrics).filter((n) => d.metrics[n].judgement && n !== state.metric);
  const templateNames = Object.keys(d.metrics).filter((n) => d.metrics[n].template)
    .sort((a, b) => d.metrics[b].last_start_ms - d.metrics[a].last_start_ms)
    .slice(0, TEMPLATE_SERIES_SHOWN);
  const [main, judgements, templates, escalations, agreement] = await Promise.all([
    seriesOf(d, state.metric, from),
    Promise.all(judgementNames.map((n) => seriesOf(d, n, from))),
    Promise.all(templateNames.map((n) => seriesOf(d, n, deviceFrom))),
    getJson("/v1/escalations", { gateway: d.gateway, device: d.device, limit: ESCALATIONS_FETCHED }),
    getJson("/v1/escalations/agreement", { gateway: d.gateway, device: d.device }),
  ]);
  if (run !== state.deviceRun) return; // the user picked something else meanwhile
  state.chart = {
    device: d.device,
    metric: state.metric,
    windows: main.windows,
    truncated: main.truncated,
    judgements: [main.windows, ...judgements.map((j) => j.windows)].flat().filter((w) => w.verdict),
  };
  drawChart(state.chart);
  renderTemplates(templates.flatMap((t) => t.windows));
  renderEscalations(escalations, agreement);
}

// ---------- templates and escalations ----------

function renderTemplates(windows) {
  const rows = windows.filter((w) => w.template)
    .sort((a, b) => b.start_ms - a.start_ms || a.metric.localeCompare(b.metric))
    .slice(0, TEMPLATE_ROWS_SHOWN)
    .map((w) => el("tr", null,
      cell(utc(w.start_ms)),
      cell(w.metric.replace(/^log\.template\./, "#"), "mono"),
      cell(int(w.count), "num"),
      cell(w.template.text || "(evicted on the gateway)", "mono wrap"),
      el("td", "mono wrap small", ...(w.template.exemplars || []).map((x) => el("span", "exemplar", x)))));
  $("templates-table").tBodies[0].replaceChildren(...rows);
  show("templates-empty", rows.length === 0);
  show("templates-table", rows.length > 0);
}

function renderEscalations(list, agreement) {
  const all = list ? list.escalations : [];
  const newest = all.slice().sort((a, b) => b.escalation.ts_ms - a.escalation.ts_ms).slice(0, ESCALATIONS_SHOWN);
  const rows = newest.map((e) => {
    const t = e.teacher;
    const agree = t ? t.alarm === e.escalation.alarm : null;
    return el("tr", null,
      cell(utc(e.escalation.ts_ms)), cell(e.series, "mono"),
      cell(e.escalation.alarm ? "alarm" : "normal", e.escalation.alarm ? "bad" : ""),
      cell(num(e.escalation.score), "num"), cell(num(e.escalation.confidence), "num"),
      cell(t ? (t.alarm ? "alarm" : "normal") : "not judged: " + (e.teacher_skipped || "unknown"), t && t.alarm ? "bad" : t ? "" : "muted"),
      cell(t ? num(t.score) : "—", "num"), cell(t ? num(t.threshold) : "—", "num"),
      cell(agree === null ? "—" : agree ? "yes" : "no", agree === false ? "bad" : agree ? "good" : "muted"));
  });
  $("escalations-table").tBodies[0].replaceChildren(...rows);
  show("escalations-empty", rows.length === 0);
  show("escalations-table", rows.length > 0);
  const o = agreement && agreement.overall;
  const items = [];
  if (o) {
    items.push(counter("escalated rows", int(o.escalations)), counter("judged by the teacher", int(o.judged)),
      counter("agree", int(o.agree), "good"), counter("disagree", int(o.disagree), o.disagree > 0 ? "bad" : ""),
      counter("agreement", o.judged > 0 ? pct(o.agree, o.judged) : "—"));
    if (all.length > newest.length || list.truncated) items.push(counter("shown (newest)", int(newest.length)));
  }
  $("agreement").replaceChildren(...items);
}

// ---------- the loop ----------

async function refresh() {
  try {
    const [health, gateways, devices] = await Promise.all([
      getJson("/v1/health"), getJson("/v1/gateways"), getJson("/v1/devices"),
    ]);
    const agreements = await Promise.all(gateways.map((g) => getJson("/v1/escalations/agreement", { gateway: g.id })));
    state.devices = devices.devices;
    renderHealth(health);
    renderFleet(gateways, state.devices, agreements);
    syncPickers();
    renderDevices(state.devices);
    await refreshDevice();
    setOk();
  } catch (e) {
    setError(e);
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

function start() {
  loadHash();
  $("pick-device").addEventListener("change", (e) => selectDevice(e.target.value));
  $("pick-metric").addEventListener("change", (e) => {
    state.metric = e.target.value;
    saveHash();
    refreshDevice().catch(setError);
  });
  $("pick-span").addEventListener("change", (e) => {
    state.span = Number(e.target.value);
    saveHash();
    refreshDevice().catch(setError);
  });
  let resize = null;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(() => drawChart(state.chart), 150);
  });
  refresh();
}

start();
