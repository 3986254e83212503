"""Writes the synthetic seed inputs of fuzz/corpus/<target>/ (valid and near-valid payloads, journal records, wire bytes); it does not fuzz, minimize or read /work/shared data.

Usage (from fuzz/): python3 seeds.py corpus   then   cargo +nightly fuzz cmin <target>
Needs only the Python standard library (a small CBOR encoder is below).
"""
import hashlib, os, re, struct, sys

ROOT = sys.argv[1]
NOW = 1_767_225_600_000

# --- minimal CBOR encoder -------------------------------------------------
class Tag:
    def __init__(self, tag, v): self.tag, self.v = tag, v
class F16:
    def __init__(self, v): self.v = v
class F32:
    def __init__(self, v): self.v = v
class Indef:
    def __init__(self, v): self.v = v
class Raw:
    def __init__(self, b): self.b = b

def head(major, n):
    if n < 24: return bytes([major << 5 | n])
    if n < 256: return bytes([major << 5 | 24, n])
    if n < 65536: return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 2**32: return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)

def cbor(v):
    if isinstance(v, Raw): return v.b
    if v is None: return b"\xf6"
    if v is True: return b"\xf5"
    if v is False: return b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, F16): return b"\xf9" + struct.pack(">e", v.v)
    if isinstance(v, F32): return b"\xfa" + struct.pack(">f", v.v)
    if isinstance(v, float): return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode(); return head(3, len(b)) + b
    if isinstance(v, bytes): return head(2, len(v)) + v
    if isinstance(v, list): return head(4, len(v)) + b"".join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    if isinstance(v, Tag): return head(6, v.tag) + cbor(v.v)
    if isinstance(v, Indef):
        if isinstance(v.v, dict):
            return b"\xbf" + b"".join(cbor(k) + cbor(x) for k, x in v.v.items()) + b"\xff"
        return b"\x9f" + b"".join(cbor(x) for x in v.v) + b"\xff"
    raise TypeError(v)

def write(target, name, data):
    d = os.path.join(ROOT, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    with open(os.path.join(d, name), "wb") as f: f.write(data)

# --- decode_json ------------------------------------------------------------
J = {
 "valid-seq-ts": f'{{"seq":7,"ts":{NOW},"Current":1.25,"Voltage":230}}',
 "bad-fields-counted": '{"a":"x","b":null,"c":[1],"d":2.5}',
 "truncated": '{"seq":',
 "array": '[1,2]',
 "overflow-number": '{"x":1e999}',
 "ts-before-2000": '{"ts":5,"x":1}',
 "ts-string": '{"ts":"yesterday","x":1}',
 "seq-negative": '{"seq":-1,"x":1}',
 "seq-fraction": '{"seq":1.5,"x":1}',
 "seq-2p53": '{"seq":9007199254740992,"x":1}',
 "seq-max-ok": '{"seq":9007199254740991,"x":1}',
 "empty-object": '{}',
 "only-problems": '{"s":"on","t":false}',
 "ts-frac-extremes": f'{{"ts":{NOW}.75,"neg0":-0.0,"big":1e308,"tiny":5e-324,"i":-9223372036854775808,"u":18446744073709551615}}',
 "ts-future": f'{{"ts":{NOW + 86_400_001},"x":1}}',
 "ts-edge-future": f'{{"ts":{NOW + 86_400_000},"x":1}}',
 "long-name": '{"' + "n" * 65 + '":1,"' + "m" * 64 + '":2}',
 "nested": '{"o":{"p":1,"q":[{"r":2}]},"x":3}',
 "unicode-keys": '{"temp\\u00b0C":21.5,"\\ud83d\\ude00":1,"k\\"q":2}',
 "dup-keys": '{"x":1,"x":2,"ts":1767225600000,"ts":1767225600001}',
 "whitespace": ' \n\t{ "x" : 1 , "y":\n2 }\r\n ',
 "trailing-garbage": '{"x":1} {"y":2}',
 "ts-null": '{"ts":null,"x":1}',
 "exp-numbers": '{"a":1E3,"b":-2.5e-3,"c":0.0000001,"d":123456789012345678901234567890}',
}
for k, v in J.items(): write("decode_json", "json-" + k, v)

# --- decode_cbor ------------------------------------------------------------
C = {
 "valid-f64-ts": {"ts": float(NOW), "p": 2.0, "q": float("nan")},
 "valid-int-ts-seq": {"seq": 7, "ts": NOW, "Current": F32(1.25), "Voltage": 230},
 "f16-values": {"a": F16(1.5), "b": F16(float("inf")), "c": F16(-0.0), "d": -17},
 "wrong-types": {"s": "x", "n": None, "arr": [1, 2], "m": {"k": 1}, "b": True, "by": b"\x00\x01", "x": 2.5},
 "seq-bad": {"seq": -1, "x": 1},
 "seq-float": {"seq": 3.0, "x": 1},
 "ts-string": {"ts": "now", "x": 1},
 "ts-old": {"ts": 5, "x": 1},
 "long-name": {"n" * 65: 1, "m" * 64: 2},
 "tagged": {"t": Tag(1, NOW // 1000), "big": Tag(2, b"\x01\x00\x00\x00\x00\x00\x00\x00\x00"), "x": 1},
 "indefinite": Indef({"x": 1, "arr": Indef([1, 2, Indef([])]), "y": 2.0}),
 "huge-ints": {"u": 2**64 - 1, "i": -(2**63), "j": -(2**64)},
 "empty-map": {},
}
for k, v in C.items(): write("decode_cbor", "cbor-" + k, cbor(v))
write("decode_cbor", "cbor-garbage", b"\xff\x00\x13")
write("decode_cbor", "cbor-int-key", Raw(head(5, 2) + cbor(1) + cbor(2) + cbor("x") + cbor(1)).b)
write("decode_cbor", "cbor-array", cbor([1, 2, 3]))
write("decode_cbor", "cbor-truncated", cbor({"seq": 7, "ts": NOW, "x": 1.25})[:-3])
write("decode_cbor", "cbor-huge-len", b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff")
write("decode_cbor", "cbor-deep", b"\xa1\x61x" + b"\x81" * 200 + b"\x01")
write("decode_cbor", "cbor-trailing", cbor({"x": 1}) + b"\x00")

# --- decode_influx ----------------------------------------------------------
ns = NOW * 1_000_000
I = {
 "two-lines": f'pump,device=p7,site=a temp=21.5,rpm=1200i,state="ok" {ns}\npump flow=3u {ns}\n',
 "escapes-quotes": 'my\\ meas,tag\\,x=a\\ b f="a b,c=d",g=1 5',
 "no-field": "pump",
 "no-value": "pump temp",
 "bad-value": "pump temp=abc",
 "no-measurement": ",a=b x=1",
 "bad-time": "pump x=1 notatime",
 "extra-section": "p x=1 2 3",
 "nan-inf": "m x=NaN,y=inf,z=-Infinity,w=1e999",
 "comments-crlf": f"# header\r\nm,device=d1 x=1 {ns}\r\n\r\n  # indented\n m y=2i\n",
 "bools-strings": 'm a=t,b=FALSE,c="",d="x\\"y",e=True',
 "ints": "m a=-3i,b=9223372036854775807i,c=18446744073709551615u,d=-1u,e=1.5i",
 "empty-device-tag": "m,device= x=1",
 "long-device-tag": "m,device=" + "d" * 70 + " x=1",
 "long-metric": "m" * 40 + " " + "f" * 30 + "=1",
 "ts-negative": "m x=1 -1",
 "ts-future": f"m x=1 {ns + 86_400_001_000_000}",
 "ts-max": "m x=1 9223372036854775807",
 "unicode": "température,device=chaudière valeur=12.5,état=\"ok\"",
 "quote-unbalanced": 'm a="x,b=1',
 "trailing-backslash": "m x=1\\",
 "multi-device": f"m,device=a x=1 {ns}\nm,device=b x=2 {ns}",
 "tab-spaces": "m  x=1   " + str(ns),
 "eq-in-key": "m a\\=b=1,c==2",
}
for k, v in I.items(): write("decode_influx", "influx-" + k, v)
write("decode_influx", "influx-non-utf8", b"m x=1\xff")

# --- text and log lines -----------------------------------------------------
LOG = [
 "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
 "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
 "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
 "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogsopening app wtoken = AppWindowToken{9f4ef63 token=Token{a64f992 ActivityRecord{de9231d u0 com.tencent.qt.qtl/.activity.info.NewsDetailXmlActivity t761}}}",
 "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",
 "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster for application appattempt_1445144423722_0020_000001",
 "[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS",
 "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505 with Core: C:\\Windows\\winsxs\\amd64.dll",
 "17/06/09 20:10:40 INFO executor.CoarseGrainedExecutorBackend: Registered signal handlers for [TERM, HUP, INT]",
 "Dec 10 06:55:46 LabSZ sshd[24200]: reverse mapping checking getaddrinfo for ns.marryaldkfaczcz.com [173.234.31.186] failed - POSSIBLE BREAK-IN ATTEMPT!",
 "2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b-2096-447d-96ea-a692162415ae] 10.11.10.1 \"GET /v2/servers/detail HTTP/1.1\" status: 200",
 "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
 "pump-1 temp=21.5 OK",
 "[[[[[ nested [brackets] ]]]]] 12:00",
 "2024-01-01T00:00:00Z [12:00:00] [warn] - component: disk 0x7ffe12ab almost full (97%) deadbeef12",
 "Mon Jan  1 00:00:00 2024 host kernel: élan vital ÅÄÖ 日本語 \u00a0nbsp",
 "1700000000 WARNING",
 "12:00:00 E tag  : padded android tag",
 "A" * 50 + " " + "1" * 50 + " 0xZZ 0x1f abc123 ABCDEF",
]
TEXT = {
 "crlf-blank": b"a b\r\n\r\nccc",
 "non-utf8": b"\xff\xfe",
 "empty": b"",
 "blank-lines": b"\n \r\n\t\n",
 "mixed-logs": "\n".join(LOG[:6]).encode(),
 "cr-only": b"line one\rline two\r",
 "utf8-multibyte": "ünïcödé 日本 🙂\n\u2028sep\u00a0".encode(),
}
for k, v in TEXT.items(): write("decode_text", "text-" + k, v)
for i, line in enumerate(LOG): write("log_line", f"log-{i:02}", line)
write("log_line", "log-multi", "\n".join(LOG[6:12]))
write("log_line", "log-empty", b"")
write("log_line", "log-non-utf8", b"2024-01-01 INFO \xff\xfe bad bytes")
write("log_line", "log-scores-nan", struct.pack("<6f", 0.9, float("nan"), 0.1, 0.2, 0.3, 0.4))
write("log_line", "log-scores-ok", struct.pack("<6f", 0.7, 0.1, 0.6, 0.1, 0.1, 0.1))

# --- journal_record ---------------------------------------------------------
def jstr(s):
    b = s.encode(); return struct.pack(">H", len(b)) + b
def jrec(device, readings, exemplars=()):
    out = jstr(device) + struct.pack(">I", len(readings))
    for m, ts, v in readings: out += jstr(m) + struct.pack(">qd", ts, v)
    if exemplars:
        out += struct.pack(">I", len(exemplars))
        for m, ts, line in exemplars: out += jstr(m) + struct.pack(">q", ts) + jstr(line)
    return out
JR = {
 "two-readings": jrec("pump-1", [("Current", NOW, 1.25), ("Voltage", NOW, 230.0)]),
 "no-readings": jrec("d", []),
 "empty-device": jrec("", [("x", 0, -0.0)]),
 "nan-inf": jrec("d", [("a", -1, float("nan")), ("b", 2**63 - 1, float("-inf"))]),
 "unicode": jrec("chaudière", [("log.line_bytes", NOW, 42.0)]),
 "exemplar": jrec("host-1", [("log.template.3", NOW, 1.0)],
                  [("log.template.3", NOW, "sshd[7]: Failed password for root from <ip> port 22")]),
}
for k, v in JR.items(): write("journal_record", "journal-" + k, v)
good = JR["two-readings"]
write("journal_record", "journal-truncated", good[:-1])
write("journal_record", "journal-trailing", good + b"\x00")
write("journal_record", "journal-count-huge", jstr("d") + b"\xff\xff\xff\xff")
write("journal_record", "journal-bad-utf8", b"\x00\x02\xc3\x28\x00\x00\x00\x00")
write("journal_record", "journal-len-over", b"\xff\xff" + b"ab")
write("journal_record", "journal-exemplars-zero", good + b"\x00\x00\x00\x00")
write("journal_record", "journal-exemplar-truncated", JR["exemplar"][:-3])

# --- wire -------------------------------------------------------------------
def window(**over):
    w = {"device": "pump-1", "metric": "Current", "start_ms": 1_583_748_840_000, "end_ms": 1_583_748_900_000,
         "count": 3, "sum": 4.5, "min": 1.0, "max": 2.0, "mean": 1.5, "stddev": 0.5, "p50": 1.5, "p95": 2.0,
         "p99": 2.0, "sketch_alpha": 0.01, "first": 1.0, "first_ms": 1_583_748_840_000, "last": 2.0,
         "last_ms": 1_583_748_842_000}
    w.update(over); return w
counters = {"late": 1, "malformed": 2}
BODIES = {
 "one-window": {"windows": [window()], "counters": counters},
 "empty": {"windows": [], "counters": {}},
 "verdict-rolled-up": {"windows": [window(verdict={"anomalous": True, "judged": 10, "alarms": 2, "score": 1.75, "confidence": 0.5}, rolled_up=4),
                                    window(device="d2", metric="log.alert", sum=float("nan"), min=float("-inf"), max=F16(float("inf")), mean=F32(0.1))],
                       "counters": {"duplicate": 2**64 - 1, "unknown_future_reason": 3}},
 "verdict-null": {"windows": [window(verdict=None)], "counters": {}},
 "missing-field": {"windows": [{"device": "d", "metric": "m"}], "counters": {}},
 "wrong-type": {"windows": {}, "counters": []},
 "indefinite": Indef({"windows": Indef([Indef(window())]), "counters": Indef({"late": 1})}),
 "unknown-field": {"windows": [], "counters": {}, "extra": 1},
 "template": {"windows": [window(metric="log.template.7", template={"text": "Failed password for <*> from <*>",
                                                                    "exemplars": ["sshd[7]: Failed password for root from <ip>"]})],
              "counters": {}},
 "template-text-only": {"windows": [window(metric="log.template.8", template={"text": ""})], "counters": {}},
 "template-wrong-type": {"windows": [window(template={"text": 3, "exemplars": "x"})], "counters": {}},
 # The agent's health counts (`agent.*` counters) and gauges (2026-12-01).
 "health-gauges": {"windows": [window()], "counters": {"agent.starts": 1, "agent.uplink_failures": 2**64 - 1, "late": 1},
                   "gauges": {"outbox_bytes": 4096, "outbox_batches": 3, "uptime_s": 2**64 - 1}},
 "gauges-empty": {"windows": [], "counters": {}, "gauges": {}},
 "gauges-negative": {"windows": [], "counters": {}, "gauges": {"outbox_bytes": -1}},
 "gauges-wrong-type": {"windows": [], "counters": {}, "gauges": [1, 2]},
}
bodies = {k: cbor(v) for k, v in BODIES.items()}
for k, v in bodies.items(): write("wire_body", "body-" + k, v)
write("wire_body", "body-truncated", bodies["one-window"][:-5])

def envelope(body, version=1, sha=None, **over):
    e = {"version": version, "gateway": "gw-1", "epoch": 7, "seq": 42, "created_ms": 1_700_000_000_000,
         "body_sha256": sha if sha is not None else hashlib.sha256(body).digest(), "body": body}
    e.update(over); return cbor(e)
golden = bytes.fromhex(
    "a76776657273696f6e0167676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f7368613235365820c70437891118eb87df1bd9890b3c0006d25992378dce41b522053698edd14c5f"
    "64626f647958f2a26777696e646f777381b2666465766963656670756d702d31666d65747269636743757272656e746873746172745f6d731b00000170bec97a4066656e645f6d731b00000170beca64a065636f756e74036373756df94480636d696ef93c00636d6178f94000646d65616ef93e0066737464646576f9380063703530f93e0063703935f9400063703939f940006c736b657463685f616c706861fb3f847ae147ae147b656669727374f93c006866697273745f6d731b00000170bec97a40646c617374f94000676c6173745f6d731b00000170bec9821068636f756e74657273a2646c61746501696d616c666f726d656402")
write("wire_envelope", "env-golden", golden)
write("wire_body", "body-golden", golden[golden.index(bytes.fromhex("58f2")) + 2:])
write("wire_envelope", "env-empty-body", envelope(bodies["empty"]))
write("wire_envelope", "env-verdict", envelope(bodies["verdict-rolled-up"], seq=1, epoch=2**64 - 1, created_ms=-1))
write("wire_envelope", "env-version-2", envelope(bodies["empty"], version=2))
write("wire_envelope", "env-version-3", envelope(bodies["empty"], version=3))
write("wire_envelope", "env-version-0", envelope(bodies["empty"], version=0))
# Schema version 2 (packed body keys): wire/tests/golden.rs GOLDEN_ENVELOPE.
golden2 = bytes.fromhex(
    "a76776657273696f6e0267676174657761796467772d316565706f63680763736571182a6a637265617465645f6d731b0000018bcfe568006b626f64795f736861323536582093185de66b706dab2d2662710734a4ccf49d52407a1ec466c2b80fd7c0ed82c9"
    "64626f64795884a20081b2006670756d702d31016743757272656e74021b00000170bec97a40031b00000170beca64a0040305f9448006f93c0007f9400008f93e0009f938000af93e000bf940000cf940000dfb3f847ae147ae147b0ef93c000f1b00000170bec97a4010f94000111b00000170bec9821001a2646c61746501696d616c666f726d656402")
write("wire_envelope", "env-golden-v2", golden2)
write("wire_body", "body-golden-packed", golden2[golden2.index(bytes.fromhex("5884")) + 2:])
# Schema versions 3 and 4 (columnar body): wire/tests/golden.rs GOLDEN_V3_*/V4_*, read from there.
golden_rs = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../wire/tests/golden.rs")).read()
for name, tag in [("GOLDEN_V3_ENVELOPE", "v3-exact"), ("GOLDEN_V3_ROUNDED_ENVELOPE", "v3-rounded"),
                  ("GOLDEN_V4_ENVELOPE", "v4-exact")]:
    env3 = bytes.fromhex(re.search(name + r': &str =\s*"([0-9a-f]+)"', golden_rs).group(1))
    write("wire_envelope", "env-golden-" + tag, env3)
    at = env3.index(b"\x64body") + 5  # the "body" key, then a byte string of one length byte
    assert env3[at] == 0x58
    write("wire_columnar", "body-golden-" + tag, env3[at + 2:at + 2 + env3[at + 1]])
# Packed keys with gauges (index 2), in a body and in a version-2 envelope.
packed_gauges = cbor({0: [], 1: {"agent.mqtt_errors": 2}, 2: {"outbox_batches": 3, "open_windows": 0}})
write("wire_body", "body-packed-gauges", packed_gauges)
write("wire_envelope", "env-v2-gauges", envelope(packed_gauges, version=2))
write("wire_envelope", "env-bad-hash", envelope(bodies["empty"], sha=b"\x00" * 32))
write("wire_envelope", "env-short-hash", envelope(bodies["empty"], sha=b""))
write("wire_envelope", "env-body-not-cbor", envelope(b"\xff\xff"))
write("wire_envelope", "env-body-wrong-shape", envelope(cbor([1, 2])))
write("wire_envelope", "env-truncated", golden[:100])
write("wire_envelope", "env-gateway-bytes", envelope(bodies["empty"], gateway=b"gw"))
write("wire_envelope", "env-array", cbor([1, "gw", 7, 42, 0, b"", b""]))

C2 = {
 "golden": counters,
 "empty": {},
 "max": {"late": 2**64 - 1, "duplicate": 0, "x": 1},
 "negative": {"late": -1},
 "float": {"late": 1.0},
 "int-key": Raw(head(5, 1) + cbor(1) + cbor(2)),
 "indefinite": Indef({"late": 1, "malformed": 2}),
 "array": [1],
}
for k, v in C2.items(): write("wire_counters", "counters-" + k, cbor(v))
write("wire_counters", "counters-dup-key", Raw(head(5, 2) + cbor("late") + cbor(1) + cbor("late") + cbor(2)).b)

# --- sparkplug_session ---------------------------------------------------------
# Sessions framed as edge_agent::fuzzing::sparkplug_session reads them: topic index
# (SPARKPLUG_TOPICS), u16 LE length, payload. The payloads are the pysparkplug-built
# vectors of edge-agent/tests/sparkplug/ (node gw1 -> n, pump -> d1, fan -> d2).
import json
SPB_TOPICS = ["NBIRTH", "NDATA", "DBIRTH/d1", "DDATA/d1", "DBIRTH/d2", "DDATA/d2", "DDEATH/d1",
              "NDEATH", "NCMD", "STATE"]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "../edge-agent/tests/sparkplug/sparkplug_vectors.json")) as f:
    spb_vectors = json.load(f)["messages"]
def spb_frame(msg):
    parts = msg["topic"].split("/")
    if parts[1] == "STATE":
        key = "STATE"
    else:
        key = parts[2] + ({"pump": "/d1", "fan": "/d2"}[parts[4]] if len(parts) > 4 else "")
        key = {"DDEATH/d2": "DDEATH/d1"}.get(key, key)
    payload = bytes.fromhex(msg["payload_hex"])
    return bytes([SPB_TOPICS.index(key)]) + struct.pack("<H", len(payload)) + payload
frames = [spb_frame(m) for m in spb_vectors]
write("sparkplug_session", "session-vectors", b"".join(frames))
write("sparkplug_session", "session-birth-data", frames[1] + frames[4])
write("sparkplug_session", "session-truncated", b"".join(frames)[:500])
