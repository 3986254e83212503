// Node-RED peer: fold every reading into its series' 60 s event-time window (count, sum, min,
// max, DDSketch-style log buckets, alpha 0.01), as edge-agent and paho_ort.py do; close a
// device's windows when its newest event time passes their end + 5 s; emit closed windows.
// No model, no journal (Node-RED has neither in a stock install).
const WIDTH = 60000, LATE = 5000, LOG_GAMMA = Math.log(1.01 / 0.99);
const st = global.get('bench') || {messages: 0, windows: 0, devices: {}};
global.set('bench', st);
st.messages++;
const p = msg.payload;
if (typeof p !== 'object' || p === null) return null;
const name = msg.topic.split('/')[1];
let dev = st.devices[name];
if (!dev) dev = st.devices[name] = {lastSeq: 0, watermark: -1, windows: new Map()};
const seq = p.seq, ts = p.ts;
if (!(seq > dev.lastSeq)) return null;
dev.lastSeq = seq;
const start = ts - ts % WIDTH;
for (const m in p) {
    if (m === 'seq' || m === 'ts') continue;
    const v = p[m];
    if (typeof v !== 'number') continue;
    const key = m + '@' + start;
    let w = dev.windows.get(key);
    if (!w) { w = {series: m, start, count: 0, sum: 0, min: v, max: v, buckets: new Map()}; dev.windows.set(key, w); }
    w.count++; w.sum += v;
    if (v < w.min) w.min = v;
    if (v > w.max) w.max = v;
    const b = v > 0 ? Math.ceil(Math.log(v) / LOG_GAMMA) : (v < 0 ? -Math.ceil(Math.log(-v) / LOG_GAMMA) - 100000 : 0);
    w.buckets.set(b, (w.buckets.get(b) || 0) + 1);
}
const out = [];
if (ts > dev.watermark) {
    dev.watermark = ts;
    const cut = ts - LATE - WIDTH;
    for (const [k, w] of dev.windows) {
        if (w.start <= cut) {
            dev.windows.delete(k);
            st.windows++;
            out.push({payload: {device: name, series: w.series, start: w.start, count: w.count, sum: w.sum,
                                min: w.min, max: w.max, sketch: [...w.buckets]}});
        }
    }
}
return out.length ? [out] : null;
