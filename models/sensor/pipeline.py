#!/usr/bin/env python3
"""One command: build teacher + int8 student, evaluate with the official SKAB scorer, write golden
vectors and the card numbers.  usage: models/.venv/bin/python models/sensor/pipeline.py"""
import json
import os
import random
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import minimize
from sklearn.neural_network import MLPRegressor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
np.random.seed(SEED)
random.seed(SEED)
OPSET = 17
W = C.WIDTH
# post-processing grid: smoothing S, absolute threshold t on the smoothed score; chosen on training
# files only as the best pooled F1 with FAR <= RULE_FAR_CAP (a margin below the 13.5 % bar)
GRID_S = [1, 5, 10, 20]
GRID_T = [round(0.2 + 0.1 * i, 2) for i in range(38)]
RULE_FAR_CAP = 10.0
# teacher: non-negative weights w (one per feature) pulled towards the prior w0 (plain mean energy
# of the 10-row block, 1/8 per channel) with strength lambda, chosen by inner 4-fold CV on training files
LAMBDAS = [0.3, 1.0, 3.0, 10.0]
# fixed held-out split (by file name, decided before looking at scores: last ~quarter of each folder)
HELDOUT = ["data/valve1/12.csv", "data/valve1/13.csv", "data/valve1/14.csv", "data/valve1/15.csv",
           "data/other/10.csv", "data/other/12.csv"]
STUDENT_HIDDEN = (32, 32)
W0 = np.zeros(W)
W0[:8] = 1.0 / 8


def fit_teacher(X, y, lam):
    """Balanced logistic loss of sigmoid(a*(log(1+f^2.w) - b)) + lam*|w-w0|^2, w >= 0 (L-BFGS-B)."""
    G = X.astype(np.float64) ** 2
    sw = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean())) / len(y)

    def obj(th):
        w, a, b = th[:W], th[W], th[W + 1]
        e = G @ w
        s = np.log1p(e)
        z = a * (s - b)
        p = 1 / (1 + np.exp(-z))
        loss = np.sum(sw * (np.logaddexp(0, z) - y * z)) + lam * np.sum((w - W0) ** 2)
        dz = sw * (p - y)
        gw = G.T @ (dz * a / (1 + e)) + 2 * lam * (w - W0)
        return loss, np.concatenate([gw, [np.sum(dz * (s - b)), -np.sum(dz) * a]])

    th0 = np.concatenate([W0 + 1e-3, [2.0, 1.0]])
    r = minimize(obj, th0, jac=True, method="L-BFGS-B",
                 bounds=[(0, None)] * W + [(None, None)] * 2, options={"maxiter": 500})
    return r.x[:W]


class Rules:
    """Fast pooled confusion counts for every (S, t) of the grid on a set of files."""

    def __init__(self, scores, D, files):
        self.c = np.zeros((len(GRID_S), len(GRID_T), 4))
        T = np.array(GRID_T)[None, :]
        for f in files:
            y = D[f][2][C.CALIB_ROWS:, None]
            for i, S in enumerate(GRID_S):
                p = C.rollmean(scores[f], S)[C.CALIB_ROWS:, None] > T
                self.c[i] += np.stack([np.sum(p & (y == 1), 0), np.sum(p & (y == 0), 0),
                                       np.sum(~p & (y == 1), 0), np.sum(~p & (y == 0), 0)], -1)

    def best(self, cap=RULE_FAR_CAP):
        """(S, t) with best F1 among FAR <= cap (ties: first in grid order); (f1, far, mar)."""
        best = None
        for i, S in enumerate(GRID_S):
            for j, t in enumerate(GRID_T):
                f1, far, mar = C.metrics(self.c[i, j])
                if far <= cap and (best is None or f1 > best[0][0]):
                    best = ((f1, far, mar), (S, t))
        if best is None:  # no rule meets the cap on these files: the one with the lowest FAR
            i, j = np.unravel_index(np.argmax(self.c[..., 1] == self.c[..., 1].min()), self.c.shape[:2])
            return (GRID_S[i], GRID_T[j]), C.metrics(self.c[i, j])
        return best[1], best[0]


def teacher_onnx(w):
    """score = log(1 + (features*features) @ w): Mul, MatMul, Add, Log (f32 weights)."""
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", W])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])
    inits = [numpy_helper.from_array(np.asarray(w, np.float32).reshape(W, 1), "w"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    nodes = [helper.make_node("Mul", ["features", "features"], ["sq"]),
             helper.make_node("MatMul", ["sq", "w"], ["energy"]),
             helper.make_node("Add", ["energy", "one"], ["e1"]),
             helper.make_node("Log", ["e1"], ["score"])]
    g = helper.make_graph(nodes, "skab_teacher", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="models/sensor")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def student_onnx(mlp):
    """Weight-only int8 QDQ: each weight is an int8 initializer -> DequantizeLinear (per-tensor,
    symmetric, zero point 0) -> MatMul (f32 activations) -> Add bias (f32) -> Relu."""
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", W])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])
    inits, nodes, cur = [], [], "features"
    n = len(mlp.coefs_)
    for i, (Wm, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        scale = np.float32(np.abs(Wm).max() / 127.0)
        Wq = np.clip(np.round(Wm / scale), -127, 127).astype(np.int8)
        inits += [numpy_helper.from_array(Wq, f"W{i}_q"),
                  numpy_helper.from_array(np.array(scale, np.float32), f"W{i}_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), f"W{i}_zp"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("DequantizeLinear", [f"W{i}_q", f"W{i}_scale", f"W{i}_zp"], [f"W{i}"]),
                  helper.make_node("MatMul", [cur, f"W{i}"], [f"mm{i}"])]
        out = "score" if i == n - 1 else f"h{i}"
        if i < n - 1:
            nodes += [helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"a{i}"]),
                      helper.make_node("Relu", [f"a{i}"], [out])]
        else:
            nodes += [helper.make_node("Add", [f"mm{i}", f"b{i}"], [out])]
        cur = out
    g = helper.make_graph(nodes, "skab_student_int8", [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="models/sensor")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(sess, F):
    return sess.run(["score"], {"features": F.astype(np.float32)})[0][:, 0]



def session_from(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class Data:
    def __init__(self):
        self.files = C.labelled_files()
        self.D = {f: C.read_skab(os.path.join(C.SKAB_ROOT, f)) for f in self.files}
        self.dts = {f: self.D[f][0] for f in self.files}
        self.cal = {f: C.calibrate(self.D[f][1][:C.CALIB_ROWS]) for f in self.files}
        self.F = {f: C.features(self.D[f][1], self.cal[f]) for f in self.files}
        _, AF, _ = C.read_skab(C.anomaly_free_file())
        # anomaly-free.csv cut into 1,150-row pseudo-devices, each calibrated on its own first 400 rows
        pseudo = {st: C.features(AF[st:st + 1150], C.calibrate(AF[st:st + C.CALIB_ROWS]))
                  for st in range(0, len(AF) - 800, 200)}
        self.normal_teacher = [pseudo[st] for st in sorted(pseudo) if st % 400 == 0]
        self.normal_distill = [pseudo[st] for st in sorted(pseudo)]
        rng = np.random.default_rng(SEED)
        clip = np.array([C.F_CLIP] * 16 + [C.LS_CLIP] * 8)
        synth = []
        for sig in [1, 2, 4, 8, 16]:
            n = 10000
            g = rng.normal(0, sig, (n, W)) * (rng.random((n, W)) < rng.uniform(0.05, 1, (n, 1)))
            synth.append(np.clip(g, -clip, clip).astype(np.float32))
        self.synth = synth


def train_teacher(d, train, lam):
    X = np.vstack([d.F[f] for f in train] + d.normal_teacher)
    y = np.concatenate([d.D[f][2] for f in train] + [np.zeros(len(a)) for a in d.normal_teacher])
    return fit_teacher(X, y, lam)


def choose_lambda(d, train):
    """Inner 4-fold leave-files-out CV on the training files only: best pooled F1 (FAR <= 13.5 %)."""
    inner = [train[i::4] for i in range(4)]
    best = None
    for lam in LAMBDAS:
        c = 0
        for fold in inner:
            tr = [f for f in train if f not in fold]
            w = train_teacher(d, tr, lam)
            sc = {f: C.teacher_score_np(d.F[f], w) for f in train}
            rule, _ = Rules(sc, d.D, tr).best()
            c = c + Rules(sc, d.D, fold).c[GRID_S.index(rule[0]), GRID_T.index(rule[1])]
        f1, far, _ = C.metrics(c)
        key = (far <= 13.5, f1)
        if best is None or key > best[0]:
            best = (key, lam)
    return best[1]


def train_student(d, train, tsess):
    """Distil the teacher's score into an MLP (no labels): inputs are features of the training files,
    of the anomaly-free pseudo-devices and synthetic sparse Gaussian vectors."""
    Xd = np.vstack([d.F[f] for f in train] + d.normal_distill + d.synth).astype(np.float32)
    yd = run(tsess, Xd)
    mlp = MLPRegressor(hidden_layer_sizes=STUDENT_HIDDEN, activation="relu", random_state=SEED,
                       max_iter=40, batch_size=256, learning_rate_init=1e-3, alpha=1e-5, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(Xd, yd)
    model = student_onnx(mlp)
    ssess = session_from(model)
    rmse = float(np.sqrt(np.mean((run(ssess, Xd) - yd) ** 2)))
    return model, ssess, rmse


def build_split(d, train, log):
    t0 = time.time()
    lam = choose_lambda(d, train)
    w = train_teacher(d, train, lam)
    tmodel = teacher_onnx(w)
    tsess = session_from(tmodel)
    smodel, ssess, rmse = train_student(d, train, tsess)
    out = {"lambda": lam, "w": w, "teacher": tmodel, "student": smodel, "distill_rmse": rmse, "scores": {},
           "rules": {}}
    for name, sess in [("teacher", tsess), ("student", ssess)]:
        sc = {f: run(sess, d.F[f]) for f in d.files}
        rule, m = Rules(sc, d.D, train).best()
        out["scores"][name], out["rules"][name] = sc, rule
    log(f"  split trained in {time.time() - t0:.0f}s: lambda={lam} rules={out['rules']} rmse={rmse:.4f}")
    return out


def predict(scores, files, rule):
    return {f: C.alarms(scores[f], *rule)[0] for f in files}


def parse_score(line):
    kv = dict(p.split("=") for p in line.split())
    return {"F1": float(kv["F1"]), "FAR": float(kv["FAR"]), "MAR": float(kv["MAR"]), "scorer": line}


def sidecar(model_file, rule, d_lam, w):
    return {
        "kind": "sensor", "model": model_file, "channels": C.CHANNELS, "calib_rows": C.CALIB_ROWS,
        "width": W, "history_rows": C.FEATURE_HISTORY + rule[0] - 1,
        "mean_windows": list(C.MEAN_WINDOWS), "std_window": C.STD_WINDOW,
        "slow_channels": list(C.SLOW), "slow_window": C.SLOW_L,
        "z_clip": C.Z_CLIP, "f_clip": C.F_CLIP, "ls_clip": C.LS_CLIP, "log_eps": C.LOG_EPS, "r_eps": C.R_EPS,
        "sd_floor_rel": C.SD_FLOOR_REL, "sd_floor_abs": C.SD_FLOOR_ABS, "s_eps": C.S_EPS,
        "rule": {"smooth": int(rule[0]), "quantile": 1.0, "multiplier": 0.0, "absolute": float(rule[1])},
        "recipe": (
            "calibration on rows 0..calib_rows-1: mu=mean, sd=max(std_pop, sd_floor_rel*|mu|+sd_floor_abs); "
            "z=clip((x-mu)/sd,+-z_clip); zl=z except slow_channels: z - trailing mean of z over slow_window rows; "
            "for W in mean_windows: m=trailing mean of zl over W rows, s_W=std_pop(m over calib rows)+s_eps, "
            "feature clip(m/s_W,+-f_clip); v=trailing std_pop of z over std_window rows, "
            "r=mean(v over calib rows)+r_eps, feature clip(ln(v/r+log_eps),+-ls_clip); "
            "features = [mean W1 (8) | mean W2 (8) | std (8)] float32; trailing = rows max(0,i-W+1)..i; "
            "score = model output; smoothed = trailing mean of the last rule.smooth scores; "
            "threshold = max(rule.absolute, rule.multiplier * quantile_q(smoothed calib scores, numpy linear)); "
            "alarm iff smoothed > threshold"),
        "teacher_lambda": d_lam, "teacher_weights": [float(v) for v in w],
    }


def write_golden(d, tsess, ssess, rules, lam, w):
    """golden.json: 8 files x 3 single vectors (last calibration row, first anomaly, +30), and per file
    a full-replay check: calibration, thresholds, alarm counts (with rows whose smoothed score is
    within 1e-4 of the threshold, where float differences may flip a decision), and features plus
    both models' scores every 37th row."""
    files = d.files
    gold, replay = [], []
    for f in files[::3][:8]:
        y = d.D[f][2]
        first = int(np.argmax(y[C.CALIB_ROWS:])) + C.CALIB_ROWS
        for i in [C.CALIB_ROWS - 1, first, first + 30]:
            x = d.F[f][i:i + 1]
            gold.append({"file": f, "row": int(i), "label": int(y[i]), "features": [float(v) for v in x[0]],
                         "teacher_score": float(run(tsess, x)[0]), "student_score": float(run(ssess, x)[0])})
        rows = list(range(0, len(y), 37))
        rp = {"file": f, "rows": int(len(y)),
              "calibration": {k: np.asarray(v).ravel().tolist() for k, v in d.cal[f].items()},
              "check_rows": rows, "check_features": d.F[f][rows].astype(float).tolist()}
        for name, sess in [("teacher", tsess), ("student", ssess)]:
            sc = run(sess, d.F[f])
            a, thr = C.alarms(sc, *rules[name])
            sm = C.rollmean(sc, rules[name][0])
            rp[f"{name}_threshold"] = thr
            rp[f"{name}_alarms"] = int(a.sum())
            rp[f"{name}_near_threshold_rows"] = int(np.sum(np.abs(sm - thr) < 1e-4))
            rp[f"check_{name}_scores"] = [float(v) for v in sc[rows]]
        replay.append(rp)
    with open(os.path.join(HERE, "golden.json"), "w") as fh:
        json.dump({"input": f"features float32 [N,{W}]", "output": "score float32 [N,1]",
                   "calibration_layout": "mu, sd, r: per channel; s: per mean window, per channel (flattened)",
                   "recipe": sidecar("student_int8.onnx", rules["student"], lam, w),
                   "teacher_rule": sidecar("teacher.onnx", rules["teacher"], lam, w)["rule"],
                   "vectors": gold, "replay": replay, "tolerance_hint": 1e-4}, fh, indent=1)


def main():
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:5.0f}s] {msg}", flush=True)

    d = Data()
    files = d.files
    V = [f for f in files if f.startswith("data/valve1/")]
    O = [f for f in files if f.startswith("data/other/")]
    tmp = "/tmp/skab_sensor_preds"
    res = {"note": "F1/FAR/MAR from the official scorer; rules and lambda chosen on each split's training "
                   "files only; 'all_files' is in-sample", "splits": {}}
    log("data loaded")

    # ---- shipped models: trained on all 22 labelled files (+ anomaly-free.csv)
    full = build_split(d, files, log)
    for name in ["teacher", "student"]:
        pr = predict(full["scores"][name], files, full["rules"][name])
        res["splits"].setdefault("all_files_in_sample", {})[name] = dict(
            parse_score(C.official_score(pr, d.dts, f"{tmp}/{name}_all")), rule=full["rules"][name])
    log(f"all files: {res['splits']['all_files_in_sample']}")

    # ---- out-of-sample estimates: every model, lambda and rule refit on the split's training files
    folds = [files[i::4] for i in range(4)]
    splits = {"cv4_pooled": [(fold, [f for f in files if f not in fold]) for fold in folds],
              "train_valve1_test_other": [(O, V)], "train_other_test_valve1": [(V, O)],
              "heldout_6_files": [(HELDOUT, [f for f in files if f not in HELDOUT])]}
    for sname, parts in splits.items():
        preds = {"teacher": {}, "student": {}}
        info = []
        for test, train in parts:
            b = build_split(d, train, log)
            info.append({"lambda": b["lambda"], "rules": b["rules"], "distill_rmse": b["distill_rmse"]})
            for name in preds:
                preds[name].update(predict(b["scores"][name], test, b["rules"][name]))
        tested = sorted(preds["teacher"])
        r = {"per_part": info}
        for name in preds:
            r[name] = parse_score(C.official_score(preds[name], d.dts, f"{tmp}/{name}_{sname}",
                                                   None if len(tested) == len(files) else tested))
        res["splits"][sname] = r
        log(f"{sname}: teacher {r['teacher']['scorer']} | student {r['student']['scorer']}")

    # pooled over both leave-one-folder-out directions (every file tested once, from the other folder)
    lofo = {}
    for name in ["teacher", "student"]:
        c = np.zeros(4)
        for sname in ["train_valve1_test_other", "train_other_test_valve1"]:
            kv = dict(p.split("=") for p in res["splits"][sname][name]["scorer"].split())
            c += [int(kv[k]) for k in ["TP", "FP", "FN", "TN"]]
        f1, far, mar = C.metrics(c)
        lofo[name] = {"F1": round(f1, 3), "FAR": round(far, 2), "MAR": round(mar, 2),
                      "counts": "TP FP FN TN = " + " ".join(str(int(v)) for v in c)}
    res["splits"]["leave_one_folder_out_pooled"] = lofo
    log(f"leave-one-folder-out pooled: {lofo}")

    # ---- write the shipped artifacts
    tpath, spath = os.path.join(HERE, "teacher.onnx"), os.path.join(HERE, "student_int8.onnx")
    onnx.save(full["teacher"], tpath)
    onnx.save(full["student"], spath)
    tsess, ssess = ort_session(tpath), ort_session(spath)
    for f in files:  # the saved files reproduce the in-memory ones
        assert np.array_equal(run(tsess, d.F[f]), full["scores"]["teacher"][f])
        assert np.array_equal(run(ssess, d.F[f]), full["scores"]["student"][f])
        assert np.allclose(full["scores"]["teacher"][f], C.teacher_score_np(d.F[f], full["w"]), atol=1e-4)
    res["teacher_lambda"] = full["lambda"]
    res["teacher_weights"] = [float(v) for v in full["w"]]
    res["distill_rmse_on_distill_set"] = full["distill_rmse"]
    for name, mf in [("teacher", "teacher.onnx"), ("student", "student_int8.onnx")]:
        sc = sidecar(mf, full["rules"][name], full["lambda"], full["w"])
        with open(os.path.join(HERE, "teacher.json" if name == "teacher" else "student_int8.json"), "w") as fh:
            json.dump(sc, fh, indent=1)

    # ---- latency: onnxruntime, 1 thread, batch 1, 20k runs after 1k warm-up
    x1 = d.F[files[0]][500:501]
    for name, sess in [("teacher", tsess), ("student", ssess)]:
        for _ in range(1000):
            sess.run(["score"], {"features": x1})
        ts = []
        for _ in range(20000):
            a = time.perf_counter_ns()
            sess.run(["score"], {"features": x1})
            ts.append(time.perf_counter_ns() - a)
        ts = np.array(ts) / 1000.0
        res.setdefault("ort_latency_us", {})[name] = {"median": float(np.median(ts)),
                                                      "p99": float(np.percentile(ts, 99))}
    res["sizes_bytes"] = {"teacher.onnx": os.path.getsize(tpath), "student_int8.onnx": os.path.getsize(spath)}
    res["student_ops"] = sorted({n.op_type for n in onnx.load(spath).graph.node})
    res["teacher_ops"] = sorted({n.op_type for n in onnx.load(tpath).graph.node})

    write_golden(d, tsess, ssess, full["rules"], full["lambda"], full["w"])
    with open(os.path.join(HERE, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    print(json.dumps({k: res[k] for k in ["sizes_bytes", "student_ops", "teacher_ops"]}))
    log("done")


if __name__ == "__main__":
    main()
