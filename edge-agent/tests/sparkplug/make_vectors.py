#!/usr/bin/env python3
"""Sparkplug B test vectors for edge-agent, built by an independent encoder.

What: a sequence of MQTT messages (topic + payload bytes) of one edge node
(group "plant", node "gw1") and two devices ("pump", "fan"), in the order the
agent receives them, each with the outcome the agent must decode it to: a
device, its readings (metric, time ms, value) and per-field problem counts, or
one whole-message reason. The expected outcomes are written here from the
values this script encodes and from the Sparkplug 3.0 rules, not by decoding
the bytes. Covers: data before any birth, NBIRTH with bdSeq and aliases and
every numeric datatype (negative signed ints, booleans, a string), DBIRTH of
two devices, NDATA/DDATA by alias only, historical metrics with old
timestamps, an unknown alias, Tahu-style encodings (Int8 as 32-bit two's
complement, UInt32 in long_value), a DataSet and a null metric, a seq gap, a
redelivered seq, wraparound 255 -> 0, NCMD and STATE, DDEATH and data after
it, a stale and a matching NDEATH, data after death, a rebirth with changed
aliases (old alias unknown, devices unborn until their new DBIRTH), a metric
time too far ahead (2200).

Encoder: pysparkplug 0.6.1 from PyPI (its payload classes, and for what its
API refuses to build, the `sparkplug_b_pb2` module it ships, generated from
Tahu's sparkplug_b.proto and run by Google's `protobuf` package). The Rust
decoder shares no code with either.

Why the vectors are committed (sparkplug_vectors.json) rather than generated in
the test: CI and developers' machines stay offline-safe and need no Python
packages; `cargo test` always checks the committed bytes. The test
`committed_vectors_match_the_generator` re-runs this script and compares when
`EDGE_SPARKPLUG_PYTHON` names a Python with pysparkplug==0.6.1 (it prints a SKIP
line otherwise). To regenerate:

    python3 -m venv /tmp/spb && /tmp/spb/bin/pip install pysparkplug==0.6.1
    /tmp/spb/bin/python edge-agent/tests/sparkplug/make_vectors.py > edge-agent/tests/sparkplug/sparkplug_vectors.json
"""

import json
import sys

import pysparkplug as spb
from pysparkplug import DataType as T
from pysparkplug._protobuf import Payload as PB

PINNED = "0.6.1"
if spb.__version__ != PINNED:
    sys.exit(f"pysparkplug {PINNED} expected, found {spb.__version__}")

NOW = 1_767_225_600_000  # the gateway clock of the test: 2026-01-01T00:00:00Z
T0 = NOW - 60_000
# Ahead of any gateway clock by more than its skew allowance, also when the
# end-to-end test runs these vectors through an agent on the real clock.
FAR_FUTURE = 7_258_118_400_000  # 2200-01-01
HOUR = 3_600_000
G, N = "plant", "gw1"
NODE = f"{G}/{N}"

messages = []


def topic(kind, device=None):
    return f"spBv1.0/{G}/{kind}/{N}" + (f"/{device}" if device else "")


def emit(note, kind, payload_bytes, expect, device=None, topic_override=None):
    messages.append(
        {
            "note": note,
            "topic": topic_override or topic(kind, device),
            "payload_hex": payload_bytes.hex(),
            "expect": expect,
        }
    )


def ok(device, readings, problems=None):
    return {"device": device, "readings": readings, "problems": problems or {}}


def err(reason):
    return {"err": reason}


def m(name, dtype, value, alias=None, ts=None, historical=False):
    return spb.Metric(
        timestamp=ts, name=name, datatype=dtype, value=value, alias=alias, is_historical=historical
    )


def a(alias, dtype, value, ts=None, historical=False):
    """A data metric by alias only (pysparkplug leaves the datatype out of data messages)."""
    return m(None, dtype, value, alias=alias, ts=ts, historical=historical)


# --- before any birth
emit("NDATA before any birth", "NDATA",
     spb.NData(timestamp=T0, seq=0, metrics=(a(1, T.INT8, 1),)).encode(),
     err("sparkplug_before_birth"))

# --- NBIRTH: bdSeq 0, every numeric datatype, aliases 1..13
t = T0 + 1000
node_birth = [
    ("i8", T.INT8, 1, -5), ("i16", T.INT16, 2, -300), ("i32", T.INT32, 3, -70000),
    ("i64", T.INT64, 4, -5_000_000_000), ("u8", T.UINT8, 5, 200), ("u16", T.UINT16, 6, 60000),
    ("u32", T.UINT32, 7, 4_000_000_000), ("u64", T.UINT64, 8, 2**53),
    ("f32", T.FLOAT, 9, 1.5), ("f64", T.DOUBLE, 10, -2.25), ("on", T.BOOLEAN, 11, True),
]
emit("NBIRTH with bdSeq, all numeric datatypes, a string", "NBIRTH",
     spb.NBirth(timestamp=t, seq=0, metrics=(
         m("bdSeq", T.INT64, 0),
         m("Node Control/Rebirth", T.BOOLEAN, False),
         *(m(name, dt, v, alias=al) for name, dt, al, v in node_birth),
         m("label", T.STRING, "hello", alias=12),
         m("Properties/Hardware", T.STRING, "pi4", alias=13),
     )).encode(),
     ok(NODE, [[name, t, float(v)] for name, _, _, v in node_birth], {"wrong_type": 2}))

# --- DBIRTHs: devices have their own alias spaces
t = T0 + 2000
emit("DBIRTH pump", "DBIRTH",
     spb.DBirth(timestamp=t, seq=1, metrics=(
         m("rpm", T.DOUBLE, 1450.0, alias=1), m("temp", T.FLOAT, 40.5, alias=2),
         m("running", T.BOOLEAN, True, alias=3),
     )).encode(),
     ok(f"{NODE}/pump", [["rpm", t, 1450.0], ["temp", t, 40.5], ["running", t, 1.0]]), "pump")
emit("DBIRTH fan", "DBIRTH",
     spb.DBirth(timestamp=t, seq=2, metrics=(
         m("speed", T.UINT16, 900, alias=1), m("temp", T.INT32, -12, alias=2),
     )).encode(),
     ok(f"{NODE}/fan", [["speed", t, 900.0], ["temp", t, -12.0]]), "fan")

# --- data by alias only
t = T0 + 3000
emit("NDATA by alias, negative ints, boolean false", "NDATA",
     spb.NData(timestamp=t, seq=3, metrics=(
         a(1, T.INT8, -128), a(4, T.INT64, -1), a(7, T.UINT32, 123), a(10, T.DOUBLE, 0.125),
         a(11, T.BOOLEAN, False),
     )).encode(),
     ok(NODE, [["i8", t, -128.0], ["i64", t, -1.0], ["u32", t, 123.0], ["f64", t, 0.125],
               ["on", t, 0.0]]))
h1, h2 = NOW - HOUR, NOW - 2 * HOUR
emit("DDATA pump by alias with historical metrics 1 h and 2 h old", "DDATA",
     spb.DData(timestamp=t, seq=4, metrics=(
         a(1, T.DOUBLE, 1500.5), a(3, T.BOOLEAN, True),
         a(2, T.FLOAT, 38.25, ts=h2, historical=True), a(2, T.FLOAT, 39.0, ts=h1, historical=True),
     )).encode(),
     ok(f"{NODE}/pump", [["rpm", t, 1500.5], ["running", t, 1.0], ["temp", h2, 38.25],
                         ["temp", h1, 39.0]]), "pump")
emit("DDATA fan with an unknown alias", "DDATA",
     spb.DData(timestamp=t, seq=5, metrics=(
         a(1, T.UINT16, 950), a(99, T.DOUBLE, 1.0), a(2, T.INT32, -15),
     )).encode(),
     ok(f"{NODE}/fan", [["speed", t, 950.0], ["temp", t, -15.0]],
        {"sparkplug_unknown_alias": 1}), "fan")

# --- what pysparkplug's API will not build: raw protobuf (its bundled pb2)
p = PB()
p.timestamp = t
p.seq = 6
x = p.metrics.add(); x.alias = 1; x.int_value = 0xFFFFFFFB          # Int8 -5, Tahu-style 32-bit
x = p.metrics.add(); x.alias = 7; x.long_value = 4_000_000_001      # UInt32 in long_value (Tahu)
x = p.metrics.add(); x.name = "table"; x.datatype = T.DATASET      # a DataSet: unsupported
x.dataset_value.num_of_columns = 1; x.dataset_value.columns.append("a"); x.dataset_value.types.append(T.INT32)
row = x.dataset_value.rows.add(); row.elements.add().int_value = 7
x = p.metrics.add(); x.alias = 9; x.is_null = True                  # null: no reading, no problem
x = p.metrics.add(); x.alias = 10; x.double_value = 2.5; x.timestamp = FAR_FUTURE
emit("NDATA: Tahu-style ints, a DataSet, a null, a time in 2200", "NDATA",
     p.SerializeToString(),
     ok(NODE, [["i8", t, -5.0], ["u32", t, 4_000_000_001.0]],
        {"unsupported": 1, "bad_timestamp": 1}))

# --- seq: a gap, a redelivery, wraparound
t = T0 + 4000
emit("NDATA seq 9 after 6: a gap of 2", "NDATA",
     spb.NData(timestamp=t, seq=9, metrics=(a(3, T.INT32, -1),)).encode(),
     ok(NODE, [["i32", t, -1.0]], {"sparkplug_seq_gap": 1, "sparkplug_seq_missed": 2}))
emit("NDATA seq 9 again: a redelivery", "NDATA",
     spb.NData(timestamp=t, seq=9, metrics=(a(3, T.INT32, -1),)).encode(),
     err("duplicate"))
for seq, missed in ((254, 244), (255, 0), (0, 0)):
    problems = {"sparkplug_seq_gap": 1, "sparkplug_seq_missed": missed} if missed else {}
    emit(f"NDATA seq {seq}", "NDATA",
         spb.NData(timestamp=t + seq, seq=seq, metrics=(a(5, T.UINT8, seq),)).encode(),
         ok(NODE, [["u8", t + seq, float(seq)]], problems))

# --- not telemetry
emit("NCMD: ignored", "NCMD",
     spb.NCmd(timestamp=t, metrics=(m("Node Control/Rebirth", T.BOOLEAN, True),)).encode(),
     err("sparkplug_ignored"))
emit("STATE of a host: ignored", None, spb.State(timestamp=t, online=True).encode(),
     err("sparkplug_ignored"), topic_override="spBv1.0/STATE/scada-host")

# --- deaths
t = T0 + 5000
emit("DDEATH fan", "DDEATH", spb.DDeath(timestamp=t, seq=1).encode(),
     ok(f"{NODE}/fan", [], {"sparkplug_death": 1}), "fan")
emit("DDATA fan after its death", "DDATA",
     spb.DData(timestamp=t, seq=2, metrics=(a(1, T.UINT16, 1),)).encode(),
     err("sparkplug_before_birth"), "fan")
emit("NDEATH with a stale bdSeq: ignored", "NDEATH",
     spb.NDeath(timestamp=t, bd_seq_metric=m("bdSeq", T.INT64, 7)).encode(),
     err("sparkplug_stale_death"))
emit("NDATA after the stale NDEATH: node still online", "NDATA",
     spb.NData(timestamp=t, seq=3, metrics=(a(2, T.INT16, 5),)).encode(),
     ok(NODE, [["i16", t, 5.0]]))
emit("NDEATH with the birth's bdSeq", "NDEATH",
     spb.NDeath(timestamp=t, bd_seq_metric=m("bdSeq", T.INT64, 0)).encode(),
     ok(NODE, [], {"sparkplug_death": 1}))
emit("NDATA after death", "NDATA",
     spb.NData(timestamp=t, seq=4, metrics=(a(2, T.INT16, 6),)).encode(),
     err("sparkplug_before_birth"))
emit("DDATA pump after its node's death", "DDATA",
     spb.DData(timestamp=t, seq=5, metrics=(a(1, T.DOUBLE, 1.0),)).encode(),
     err("sparkplug_before_birth"), "pump")

# --- rebirth with changed aliases
t = T0 + 6000
emit("NBIRTH again (bdSeq 1), new aliases", "NBIRTH",
     spb.NBirth(timestamp=t, seq=0, metrics=(
         m("bdSeq", T.INT64, 1), m("i8", T.INT8, -1, alias=20), m("f64", T.DOUBLE, 9.5, alias=21),
         m("pressure", T.DOUBLE, 1.25, alias=22),
     )).encode(),
     ok(NODE, [["i8", t, -1.0], ["f64", t, 9.5], ["pressure", t, 1.25]]))
emit("NDATA with a new alias and an old one", "NDATA",
     spb.NData(timestamp=t, seq=1, metrics=(a(21, T.DOUBLE, 10.5), a(1, T.INT8, 3))).encode(),
     ok(NODE, [["f64", t, 10.5]], {"sparkplug_unknown_alias": 1}))
emit("DDATA pump before its DBIRTH of the new session", "DDATA",
     spb.DData(timestamp=t, seq=2, metrics=(a(1, T.DOUBLE, 1.0),)).encode(),
     err("sparkplug_before_birth"), "pump")
emit("DBIRTH pump, new aliases", "DBIRTH",
     spb.DBirth(timestamp=t, seq=3, metrics=(m("rpm", T.DOUBLE, 1200.0, alias=5),)).encode(),
     ok(f"{NODE}/pump", [["rpm", t, 1200.0]]), "pump")
emit("DDATA pump by its new alias", "DDATA",
     spb.DData(timestamp=t + 1, seq=4, metrics=(a(5, T.DOUBLE, 1210.0),)).encode(),
     ok(f"{NODE}/pump", [["rpm", t + 1, 1210.0]]), "pump")
emit("NDEATH of the first session arriving late: stale", "NDEATH",
     spb.NDeath(timestamp=t, bd_seq_metric=m("bdSeq", T.INT64, 0)).encode(),
     err("sparkplug_stale_death"))

json.dump({"generator": f"pysparkplug {PINNED}", "now_ms": NOW, "messages": messages},
          sys.stdout, indent=1)
sys.stdout.write("\n")
