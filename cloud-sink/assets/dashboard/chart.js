// The dashboard's chart: one series' windows as inline SVG (mean line, min–max
// band, a point per window) with the device's anomalous judgement windows shaded
// and marked, and windows that carried escalated rows marked on the time axis.
// Text from the sink only ever goes in as textContent or attribute values.

const SVG_NS = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const show = (id, visible) => { $(id).hidden = !visible; };

function svg(tag, attrs, title) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (title) {
    const t = document.createElementNS(SVG_NS, "title");
    t.textContent = title;
    e.append(t);
  }
  return e;
}

export function num(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "—";
  const a = Math.abs(x);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(3);
  return String(Number(x.toPrecision(5)));
}

export const utc = (ms) => (Number.isFinite(ms) ? new Date(ms).toISOString().slice(0, 19).replace("T", " ") : "—");

function niceStep(range, target) {
  const raw = range / target;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

export function drawChart(data) {
  const box = $("chart");
  const windows = data ? data.windows.slice().sort((a, b) => a.start_ms - b.start_ms) : [];
  show("chart-empty", windows.length === 0);
  show("chart-box", windows.length > 0);
  box.dataset.points = String(windows.length);
  if (windows.length === 0) {
    box.replaceChildren();
    box.dataset.alarms = "0";
    return;
  }
  const W = Math.max(320, Math.round(box.clientWidth || 900));
  const H = 300;
  const L = 64, R = 14, T = 16, B = 28;
  box.setAttribute("viewBox", "0 0 " + W + " " + H);

  const x0 = windows[0].start_ms;
  const x1 = Math.max(...windows.map((w) => w.end_ms));
  let y0 = Math.min(...windows.map((w) => w.min));
  let y1 = Math.max(...windows.map((w) => w.max));
  if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.06;
  y0 -= pad; y1 += pad;
  const sx = (t) => L + (W - L - R) * (t - x0) / Math.max(1, x1 - x0);
  const sy = (v) => T + (H - T - B) * (1 - (v - y0) / (y1 - y0));
  const mid = (w) => (w.start_ms + w.end_ms) / 2;
  const parts = [];

  const ys = niceStep(y1 - y0, 5);
  for (let v = Math.ceil(y0 / ys) * ys; v <= y1; v += ys) {
    parts.push(svg("line", { class: "grid", x1: L, x2: W - R, y1: sy(v), y2: sy(v) }));
    const label = svg("text", { class: "axis-label", x: L - 6, y: sy(v) + 4, "text-anchor": "end" });
    label.textContent = num(Number(v.toPrecision(12)));
    parts.push(label);
  }
  const xs = niceStep(x1 - x0, 6);
  const long = x1 - x0 > 2 * 86400e3;
  for (let t = Math.ceil(x0 / xs) * xs; t <= x1; t += xs) {
    parts.push(svg("line", { class: "grid", x1: sx(t), x2: sx(t), y1: T, y2: H - B }));
    const label = svg("text", { class: "axis-label", x: sx(t), y: H - 8, "text-anchor": "middle" });
    label.textContent = long ? utc(t).slice(5, 10) : utc(t).slice(11, 16);
    parts.push(label);
  }

  // Anomalous judgement windows of this device: a shaded span and a mark on top.
  let alarms = 0;
  for (const w of data.judgements) {
    if (!w.verdict.anomalous || w.end_ms <= x0 || w.start_ms >= x1) continue;
    alarms++;
    const a = sx(Math.max(w.start_ms, x0));
    const b = sx(Math.min(w.end_ms, x1));
    const tip = w.metric + " anomalous at " + utc(w.start_ms) + ": " + w.verdict.alarms + " of " + w.verdict.judged + " rows above threshold, top score " + num(w.verdict.score);
    parts.push(svg("rect", { class: "alarm-span", x: a, y: T, width: Math.max(1.5, b - a), height: H - T - B }, tip));
    const c = (a + b) / 2;
    parts.push(svg("path", { class: "alarm-mark", d: `M${c - 5},${T - 10}L${c + 5},${T - 10}L${c},${T - 1}Z` }, tip));
  }
  box.dataset.alarms = String(alarms);

  const band = windows.map((w) => `${sx(mid(w))},${sy(w.max)}`)
    .concat(windows.slice().reverse().map((w) => `${sx(mid(w))},${sy(w.min)}`));
  parts.push(svg("polygon", { class: "band", points: band.join(" ") }));
  parts.push(svg("path", { class: "mean", d: "M" + windows.map((w) => `${sx(mid(w))},${sy(w.mean)}`).join("L") }));
  for (const w of windows) {
    const anomalous = w.verdict && w.verdict.anomalous;
    const tip = utc(w.start_ms) + " UTC: mean " + num(w.mean) + ", min " + num(w.min) + ", max " + num(w.max) + ", " + w.count + " readings" + (w.rolled_up ? ", rolled up from " + w.rolled_up : "");
    parts.push(svg("circle", { class: anomalous ? "pt alarm" : "pt", cx: sx(mid(w)), cy: sy(w.mean), r: 2.6 }, tip));
  }
  // Windows that carried escalated rows: a diamond on the time axis.
  for (const w of data.judgements) {
    if (!w.escalations || w.escalations.length === 0 || w.end_ms <= x0 || w.start_ms >= x1) continue;
    const c = sx(mid(w)), y = H - B;
    parts.push(svg("path", { class: "esc-mark", d: `M${c},${y - 6}L${c + 5},${y}L${c},${y + 6}L${c - 5},${y}Z` },
      w.escalations.length + " row(s) escalated to the teacher at " + utc(w.start_ms)));
  }
  box.replaceChildren(...parts);
  $("chart-caption").textContent = windows.length + " windows of " + data.metric + " on " + data.device + ", " +
    utc(x0) + " – " + utc(x1) + " UTC (event time); " + alarms + " anomalous judgement window(s)" +
    (data.truncated ? "; only the first " + windows.length + " windows of the span are drawn" : "") + ".";
}

