"""onnxruntime single-thread latency on the committed sensor and log models, the peer of
edge-agent/benches/model_latency.rs: same golden inputs, batch 1, 1,000 warm-up calls,
p50/p99 over 20,000 calls. Also prints the Python-side overhead of the timing loop (an
empty call), which the onnxruntime figures include."""
import json
import pathlib
import time

import numpy as np
import onnxruntime as ort

HERE = pathlib.Path(__file__).resolve().parent
# (folder, model file, golden list key, feature key) -- same table as the Rust bench
MODELS = [("sensor", "student_int8.onnx", "vectors", "features"),
          ("sensor", "teacher.onnx", "vectors", "features"),
          ("log", "student_int8.onnx", "cases", "student_features"),
          ("log", "teacher.onnx", "cases", "teacher_features")]


def percentiles(fn, rows):
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


def main():
    p50, p99 = percentiles(lambda x: None, [None])
    print(f"python loop overhead: p50 {p50:.2f} us, p99 {p99:.2f} us")
    for folder, name, lst, key in MODELS:
        golden = json.loads((HERE / folder / "golden.json").read_text())
        rows = [np.asarray([v[key]], dtype=np.float32) for v in golden[lst]]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(HERE / folder / name), opts, providers=["CPUExecutionProvider"])
        p50, p99 = percentiles(lambda x: sess.run(None, {"features": x}), rows)
        print(f"onnxruntime {ort.__version__} {folder}/{name}: p50 {p50:.2f} us, p99 {p99:.2f} us "
              f"(batch 1, width {rows[0].shape[1]}, 20000 calls)")


if __name__ == "__main__":
    main()
