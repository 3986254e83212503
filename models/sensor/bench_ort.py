"""onnxruntime single-thread latency on the committed sensor models, the peer of
edge-agent/benches/model_latency.rs: same golden inputs, batch 1, 1,000 warm-up
calls, p50/p99 over 20,000 calls. Also prints the Python-side overhead of the
timing loop (an empty call), which the onnxruntime figures include."""
import json
import pathlib
import time

import numpy as np
import onnxruntime as ort

HERE = pathlib.Path(__file__).resolve().parent
rows = [np.asarray([v["features"]], dtype=np.float32)
        for v in json.loads((HERE / "golden.json").read_text())["vectors"]]


def percentiles(fn):
    for i in range(1_000):
        fn(rows[i % len(rows)])
    us = []
    for i in range(20_000):
        x = rows[i % len(rows)]
        t = time.perf_counter_ns()
        fn(x)
        us.append((time.perf_counter_ns() - t) / 1e3)
    us.sort()
    return us[len(us) // 2], us[int((len(us) - 1) * 0.99)]


p50, p99 = percentiles(lambda x: None)
print(f"python loop overhead: p50 {p50:.2f} us, p99 {p99:.2f} us")
for name in ["student_int8.onnx", "teacher.onnx"]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(HERE / name), opts, providers=["CPUExecutionProvider"])
    p50, p99 = percentiles(lambda x: sess.run(None, {"features": x}))
    print(f"onnxruntime {ort.__version__} {name}: p50 {p50:.2f} us, p99 {p99:.2f} us (batch 1, 20000 calls)")
