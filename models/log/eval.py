#!/usr/bin/env python3
"""Re-score the SHIPPED log models (teacher.onnx, student_int8.onnx) with onnxruntime on every
Loghub line, using only their sidecars for the feature recipe, and check the golden vectors.

usage: models/.venv/bin/python models/log/eval.py

The shipped models were trained on all these lines, so the numbers printed here are IN-SAMPLE
(a fit / export check); the held-out estimates are the template-grouped cross-validation in
results.json written by pipeline.py.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import pipeline as P  # noqa: E402


def main():
    rows = C.load_lines()
    U = P.uniques(rows)
    with open(os.path.join(C.HERE, "golden.json")) as fh:
        gold = json.load(fh)["cases"]
    out = {}
    for name, fkey, skey in [("teacher", "teacher_features", "teacher_scores"),
                             ("student_int8", "student_features", "student_scores")]:
        with open(os.path.join(C.HERE, f"{name}.json")) as fh:
            side = json.load(fh)
        assert side["features"] == C.recipe(side["features"]["hash_dim"]), "sidecar recipe differs from common.py"
        D = side["features"]["hash_dim"]
        sess = P.ort_session(os.path.join(C.HERE, side["model"]))
        X = C.featurize_many([u["content"] for u in U], D)
        S = sess.run(["scores"], {"features": X})[0]
        out[name] = P.metrics(U, S)
        worst_f = max(float(np.abs(C.featurize(g["content"], D) - np.array(g[fkey], np.float32)).max()) for g in gold)
        worst_s = max(float(np.abs(sess.run(["scores"], {"features": np.array([g[fkey]], np.float32)})[0][0]
                                   - np.array(g[skey])).max()) for g in gold)
        print(f"{name}: golden max |feature diff| {worst_f:.2e}, max |score diff| {worst_s:.2e}")
        assert worst_f <= 1e-6 and worst_s <= 1e-5
        m = out[name]
        print(f"  in-sample BGL alert {m['alert']}\n  in-sample severity acc {m['severity']['accuracy']} "
              f"macro-F1 {m['severity']['macro_f1_over_present_classes']}")
    with open(os.path.join(C.HERE, "results.json")) as fh:
        res = json.load(fh)
    for k in ["teacher", "student"]:
        m = res["cv_by_template"][k]
        print(f"held-out (results.json, 5-fold CV grouped by template) {k}: alert {m['alert']} severity acc "
              f"{m['severity']['accuracy']} macro-F1 {m['severity']['macro_f1_over_present_classes']}")
    same = res["in_sample_shipped_ort"]["teacher"] == out["teacher"] and \
        res["in_sample_shipped_ort"]["student"] == out["student_int8"]
    print("matches results.json in-sample numbers:", same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
