#!/usr/bin/env python3
"""Estimates uplink bytes per 60 s window for candidate body encodings, on SKAB's anomaly-free file.

A model of the encoding, not the pipeline: it windows the file's 8 metrics (60 rows = 60 s at
1 Hz), computes the fields a wire v2 WindowSummary carries, and encodes them several ways in one
batch (all windows of the file, ordered by start then metric: like a drained day's batches, which
hold many windows per series; a live cut holds one window per series), gzip level 6 as the agent.
raw/uplink compares with the JSON payloads fleet-sim/load-gen publish for the same readings.
Calibrated against the pipeline: its first row (row-wise f64) estimates 63.7 B/window, 25.7x;
the measured 1 Hz day (BENCHMARKS.md) gave 61 B and 23.9x.

Usage: python3 hil-tests/bench/uplink_estimate.py [path/to/anomaly-free.csv]. Not part of CI.
"""
import csv
import gzip
import json
import math
import os
import statistics
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("EDGE_DATA_DIR", os.path.join(HERE, "../../../shared/data"))
CSV = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DATA, "SKAB/data/anomaly-free/anomaly-free.csv")
rows = list(csv.reader(open(CSV), delimiter=';'))
hdr, rows = rows[0], rows[1:]
metrics = hdr[1:]
T0 = 1767225600000
# raw: fleet-sim-like JSON per message
raw = 0
for i, r in enumerate(rows):
    d = {"seq": i, "ts": T0 + i*1000}
    for m, v in zip(metrics, r[1:]): d[m] = float(v)
    raw += len(json.dumps(d, separators=(',', ':')))
def cb_uint(major, n):
    if n < 24: return bytes([major<<5 | n])
    if n < 256: return bytes([major<<5 | 24, n])
    if n < 65536: return bytes([major<<5 | 25]) + struct.pack('>H', n)
    if n < 2**32: return bytes([major<<5 | 26]) + struct.pack('>I', n)
    return bytes([major<<5 | 27]) + struct.pack('>Q', n)
def cb_int(n): return cb_uint(0, n) if n >= 0 else cb_uint(1, -1-n)
def cb_str(s): b = s.encode(); return cb_uint(3, len(b)) + b
def cb_f64(x): return b'\xfb' + struct.pack('>d', x)
def cb_f32(x): return b'\xfa' + struct.pack('>f', x)
def cb_arr(items): return cb_uint(4, len(items)) + b''.join(items)
W = 60
wins = []
for j, m in enumerate(metrics):
    vals = [float(r[1+j]) for r in rows]
    for s in range(0, len(vals) - W + 1, W):
        v = vals[s:s+W]; srt = sorted(v)
        q = lambda p: srt[min(len(srt)-1, int(p*len(srt)))]
        wins.append(dict(device="dev-001", metric=m, start=T0+s*1000, end=T0+(s+W)*1000, count=W,
            sum=math.fsum(v), min=min(v), max=max(v), mean=statistics.fmean(v), sd=statistics.pstdev(v),
            p50=q(.5), p95=q(.95), p99=q(.99), alpha=0.01, first=v[0], first_ms=T0+s*1000, last=v[-1], last_ms=T0+(s+W-1)*1000))
nwin = len(wins)
raw_share = raw * (nwin * W / (len(rows) * len(metrics)))  # raw bytes of the readings these windows cover
def report(name, blob):
    z = gzip.compress(blob, 6)
    print(f"{name:55s} {len(blob)/nwin:7.1f} B/win raw-enc, {len(z)/nwin:6.1f} B/win gzip, raw/uplink {raw_share/len(z):6.1f}x")
F = ['sum','min','max','mean','sd','p50','p95','p99','alpha','first','last']
def v2(w): return cb_arr([cb_str(w['device']), cb_str(w['metric']), cb_int(w['start']), cb_int(w['end']), cb_int(w['count'])] + [cb_f64(w[k]) for k in F] + [cb_int(w['first_ms']), cb_int(w['last_ms'])])
order = sorted(wins, key=lambda w: (w['start'], w['metric']))  # a cut: all series of one minute together
report("row-wise, f64 (like wire v2)", b''.join(v2(w) for w in order))
def slim(w): return cb_arr([cb_str(w['metric']), cb_int((w['start']-T0)//60000), cb_int(w['count'])] + [cb_f64(w[k]) for k in ['sum','min','max','sd','p50','p95','p99','first','last']] + [cb_int((w['first_ms']-w['start'])//1000), cb_int((w['end']-w['last_ms'])//1000)])
report("row-wise, f64, derivable fields dropped", b''.join(slim(w) for w in order))
def slim32(w): return cb_arr([cb_str(w['metric']), cb_int((w['start']-T0)//60000), cb_int(w['count'])] + [cb_f32(w[k]) for k in ['sum','min','max','sd','p50','p95','p99','first','last']] + [cb_int((w['first_ms']-w['start'])//1000), cb_int((w['end']-w['last_ms'])//1000)])
report("row-wise, f32, derivable dropped", b''.join(slim32(w) for w in order))
# columnar per series: each field's values for consecutive windows together, f32
by = {}
for w in order: by.setdefault(w['metric'], []).append(w)
def ints(ws):
    # Per series: first window's minute, then per window count (2 B) and the first/last reading's
    # second within it (1 B each); consecutive windows' starts are implied.
    head = cb_int((ws[0]['start'] - T0) // 60000)
    return head + b''.join(struct.pack('>HBB', w['count'], (w['first_ms'] - w['start']) // 1000,
                                       (w['end'] - w['last_ms']) // 1000) for w in ws)
col = b''
for m, ws in by.items():
    col += cb_str(m) + ints(ws)
    for k in ['sum','min','max','sd','p50','p95','p99','first','last']:
        col += b''.join(struct.pack('>f', w[k]) for w in ws)
report("columnar per series, f32", col)
def quantized(alpha):
    # Relative error alpha: sign + index of the value's log bucket (as the sketch's, gamma = (1+a)/(1-a)).
    ln_g = math.log((1 + alpha) / (1 - alpha))
    def q(x):
        if abs(x) < 1e-9: return b'\x00\x00\x00'
        i = int(round(math.log(abs(x)) / ln_g)) + (1 << 22)
        return struct.pack('>I', (i & 0x7fffff) | (0x800000 if x < 0 else 0))[1:]
    out = b''
    for m, ws in by.items():
        out += cb_str(m) + ints(ws)
        for k in ['sum','min','max','sd','p50','p95','p99','first','last']:
            out += b''.join(q(w[k]) for w in ws)
    return out
report("columnar per series, 0.1% relative (3 B/value)", quantized(0.001))
report("columnar per series, 1% relative (3 B/value)", quantized(0.01))
