#!/usr/bin/env python3
"""Python peer of edge-agent for the benchmark harness (hil-tests/bench/compare.sh).

paho-mqtt subscribes (QoS 1) to the sensor topic; every message goes through the same
steps the agent's sensor route takes, in plain Python + numpy + onnxruntime:

1. decode the JSON payload ({"seq","ts", 8 SKAB metrics}); device = topic segment 1;
   drop a message whose seq is not above the device's last (the agent's duplicate check);
2. the shipped sensor model per row, per device (models/sensor/student_int8.onnx and its
   sidecar recipe, as edge-agent/src/classify/sensor_recipe.rs): the first 400 rows calibrate
   (models/sensor/common.py's calibrate, the reference the Rust port mirrors), later rows are
   featurized in streaming form (trailing means over 10/60 rows of slow-detrended z, trailing
   std over 30 rows), scored by onnxruntime in batches (like the agent's group commit: up to
   256 rows or 20 ms), and the normalized score becomes the device's "anomaly" reading;
3. every reading is folded into its series' 60 s event-time window (count, sum, min, max and a
   DDSketch-style log-bucket histogram with alpha 0.01, as the agent's sketch_alpha);
   a window closes when the device's newest event time passes its end + 5 s lateness;
4. closed windows are appended as JSON lines to an outbox file.

Differences from the agent (all in Python's favour): no journal, no fsync and no crash
recovery (the agent commits every group durably before its PUBACK); paho acks on receipt;
no uplink to a sink; std over 30 rows is one-pass (running sums), the agent's two-pass;
no escalation of unsure rows; no health counters.

Stats: once a second "unix_secs messages rows_scored windows_closed" is appended to
--stats. SIGTERM/SIGINT end it cleanly.
"""
import argparse
import json
import math
import os
import signal
import sys
import time
from collections import deque

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../.."))
sys.path.insert(0, os.path.join(ROOT, "models", "sensor"))
import common  # noqa: E402  (the reference recipe; only calibrate() and constants are used)

import paho.mqtt.client as mqtt  # noqa: E402

WIDTH_MS = 60_000
LATENESS_MS = 5_000
ALPHA = 0.01
LOG_GAMMA = math.log((1 + ALPHA) / (1 - ALPHA))
BATCH_ROWS = 256
BATCH_MS = 20


class Device:
    __slots__ = ("last_seq", "calib", "cal", "slow", "slow_sum", "means", "mean_sums",
                 "zq", "z_sum", "z_sq", "watermark", "windows")

    def __init__(self):
        self.last_seq = 0
        self.calib = []
        self.cal = None
        self.watermark = -1
        self.windows = {}  # (metric, start) -> [count, sum, min, max, buckets]


class Peer:
    def __init__(self, model, outbox):
        recipe = json.load(open(os.path.splitext(model)[0] + ".json"))
        self.channels = recipe["channels"]
        self.threshold = recipe["rule"]["absolute"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.devices = {}
        self.pending = []  # (device name, Device, ts, features)
        self.pending_since = 0.0
        self.out = open(outbox, "a", buffering=1 << 16)
        self.messages = 0
        self.rows_scored = 0
        self.windows_closed = 0
        self.slow = list(common.SLOW)
        self.fast = [c for c in range(8) if c not in common.SLOW]

    # ------------------------------------------------------------------ model features
    def _start(self, dev):
        X = np.asarray(dev.calib, dtype=np.float64)
        dev.cal = common.calibrate(X)
        dev.calib = None
        dev.slow = deque()
        dev.slow_sum = np.zeros(len(self.slow))
        dev.means = [deque() for _ in common.MEAN_WINDOWS]
        dev.mean_sums = [np.zeros(8) for _ in common.MEAN_WINDOWS]
        dev.zq = deque()
        dev.z_sum = np.zeros(8)
        dev.z_sq = np.zeros(8)
        for x in X:  # the calibration rows are the history the first features need
            self._features(dev, x)

    def _features(self, dev, x):
        cal = dev.cal
        z = np.clip((x - cal["mu"]) / cal["sd"], -common.Z_CLIP, common.Z_CLIP)
        zs = z[self.slow]
        dev.slow.append(zs)
        dev.slow_sum += zs
        if len(dev.slow) > common.SLOW_L:
            dev.slow_sum -= dev.slow.popleft()
        zl = z.copy()
        zl[self.slow] = zs - dev.slow_sum / len(dev.slow)
        blocks = []
        for k, w in enumerate(common.MEAN_WINDOWS):
            q = dev.means[k]
            q.append(zl)
            dev.mean_sums[k] += zl
            if len(q) > w:
                dev.mean_sums[k] -= q.popleft()
            blocks.append(np.clip(dev.mean_sums[k] / len(q) / cal["s"][k], -common.F_CLIP, common.F_CLIP))
        dev.zq.append(z)
        dev.z_sum += z
        dev.z_sq += z * z
        if len(dev.zq) > common.STD_WINDOW:
            old = dev.zq.popleft()
            dev.z_sum -= old
            dev.z_sq -= old * old
        n = len(dev.zq)
        var = np.maximum(dev.z_sq / n - (dev.z_sum / n) ** 2, 0.0)
        blocks.append(np.clip(np.log(np.sqrt(var) / cal["r"] + common.LOG_EPS), -common.LS_CLIP, common.LS_CLIP))
        return np.concatenate(blocks)

    def flush_model(self):
        if not self.pending:
            return
        F = np.asarray([p[3] for p in self.pending], dtype=np.float32)
        scores = self.sess.run(None, {self.input: F})[0].reshape(-1)
        for (name, dev, ts, _), s in zip(self.pending, scores):
            self._fold(name, dev, "anomaly", ts, float(s) / self.threshold)
        self.rows_scored += len(self.pending)
        self.pending = []

    # ------------------------------------------------------------------ windows
    def _fold(self, name, dev, metric, ts, v):
        start = ts - ts % WIDTH_MS
        key = (metric, start)
        w = dev.windows.get(key)
        if w is None:
            w = dev.windows[key] = [0, 0.0, v, v, {}]
        w[0] += 1
        w[1] += v
        if v < w[2]:
            w[2] = v
        if v > w[3]:
            w[3] = v
        b = math.ceil(math.log(v) / LOG_GAMMA) if v > 0 else (-math.ceil(math.log(-v) / LOG_GAMMA) - 100000 if v < 0 else 0)
        w[4][b] = w[4].get(b, 0) + 1

    def _close(self, name, dev):
        cut = dev.watermark - LATENESS_MS - WIDTH_MS
        done = [k for k in dev.windows if k[1] <= cut]
        for k in done:
            c, s, lo, hi, buckets = dev.windows.pop(k)
            self.out.write(json.dumps({"device": name, "series": k[0], "start": k[1], "count": c,
                                       "sum": s, "min": lo, "max": hi,
                                       "sketch": sorted(buckets.items())}) + "\n")
            self.windows_closed += 1

    # ------------------------------------------------------------------ messages
    def on_message(self, _client, _userdata, msg):
        self.messages += 1
        name = msg.topic.split("/")[1]
        try:
            doc = json.loads(msg.payload)
            ts = int(doc["ts"])
            seq = int(doc["seq"])
        except (ValueError, KeyError, TypeError):
            return
        dev = self.devices.get(name)
        if dev is None:
            dev = self.devices[name] = Device()
        if seq <= dev.last_seq:
            return
        dev.last_seq = seq
        row = []
        for m in self.channels:
            v = doc.get(m)
            if isinstance(v, (int, float)):
                self._fold(name, dev, m, ts, float(v))
                row.append(float(v))
        if len(row) == len(self.channels):
            if dev.cal is None:
                dev.calib.append(row)
                if len(dev.calib) == common.CALIB_ROWS:
                    self._start(dev)
            else:
                if not self.pending:
                    self.pending_since = time.monotonic()
                self.pending.append((name, dev, ts, self._features(dev, np.asarray(row))))
                if len(self.pending) >= BATCH_ROWS:
                    self.flush_model()
        if ts > dev.watermark:
            dev.watermark = ts
            if dev.windows and min(k[1] for k in dev.windows) + WIDTH_MS + LATENESS_MS <= ts:
                self._close(name, dev)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--topic", default="plant/+/sensors")
    ap.add_argument("--client-id", default="paho-ort-peer")
    ap.add_argument("--model", default=os.path.join(ROOT, "models/sensor/student_int8.onnx"))
    ap.add_argument("--outbox", default="/dev/null")
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()

    peer = Peer(a.model, a.outbox)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.client_id, clean_session=True)
    client.max_inflight_messages_set(1000)
    client.on_message = peer.on_message
    client.on_connect = lambda c, *_: c.subscribe(a.topic, qos=1)
    client.connect(a.host, a.port, keepalive=30)
    stats = open(a.stats, "a", buffering=1)
    next_stats = time.monotonic()
    while not stop:
        client.loop(timeout=0.01)
        now = time.monotonic()
        if peer.pending and now - peer.pending_since >= BATCH_MS / 1000:
            peer.flush_model()
        if now >= next_stats:
            stats.write(f"{time.time():.3f} {peer.messages} {peer.rows_scored} {peer.windows_closed}\n")
            next_stats = now + 1.0
    peer.flush_model()
    stats.write(f"{time.time():.3f} {peer.messages} {peer.rows_scored} {peer.windows_closed}\n")
    client.disconnect()


if __name__ == "__main__":
    main()
