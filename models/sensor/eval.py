#!/usr/bin/env python3
"""Re-evaluate the SHIPPED ONNX models (no training): features per golden.json recipe, onnxruntime
scores, post-processing rule from the sidecar (teacher.json / student_int8.json), predictions in the scorer's format, official scorer.
usage: models/.venv/bin/python models/sensor/eval.py [teacher|student] [PREDICTIONS_DIR]"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
from pipeline import ort_session, run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    which = sys.argv[1] if len(sys.argv) > 1 else "student"
    outdir = sys.argv[2] if len(sys.argv) > 2 else f"/tmp/skab_sensor_eval_{which}"
    side = json.load(open(os.path.join(HERE, "teacher.json" if which == "teacher" else "student_int8.json")))
    rule = side["rule"]
    sess = ort_session(os.path.join(HERE, "teacher.onnx" if which == "teacher" else "student_int8.onnx"))
    preds, dts = {}, {}
    for f in C.labelled_files():
        dt, X, _ = C.read_skab(os.path.join(C.SKAB_ROOT, f))
        sc = run(sess, C.features(X, C.calibrate(X[:C.CALIB_ROWS])))
        preds[f], _ = C.alarms(sc, rule["smooth"], rule["absolute"])
        dts[f] = dt
    print(which, rule, C.official_score(preds, dts, outdir))


if __name__ == "__main__":
    main()
