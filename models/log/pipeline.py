#!/usr/bin/env python3
"""One command: train the log-line teacher (float MLP, D=2048, 128 hidden) and distil the int8 student
(D=2048, 64 hidden), evaluate both with template-grouped cross-validation, export ONNX + sidecars, golden
vectors, results and latency.   usage: models/.venv/bin/python models/log/pipeline.py

Data: Loghub 2k structured CSVs read in place from ../shared/data/loghub (env LOGHUB_ROOT).
Alert labels: BGL `Label` only. Severity labels: each system's `Level` via common.LEVEL_MAP.
"""
import collections
import json
import os
import random
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402
import train as T  # noqa: E402

SEED = 0
np.random.seed(SEED)
random.seed(SEED)
TEACHER = {"D": 2048, "hidden": 128, "steps": 300}
STUDENT = {"D": 2048, "hidden": 64, "steps": 600}
FOLDS = 5
HARD = 0.2            # student target = HARD * label + (1 - HARD) * teacher, where a label exists
WEAK = 3.0            # weight (x mean BGL alert weight) of weak alert labels from other systems' levels
THRESHOLD = 0.5       # alert decision threshold, fixed before any evaluation (classes are balanced)
K = len(C.SEVERITIES)


def uniques(rows):
    """Distinct (system, content) -> aggregated labels, line count and first event."""
    agg = collections.OrderedDict()
    for r in rows:
        u = agg.setdefault((r["system"], r["content"]), {"system": r["system"], "content": r["content"],
                                                        "event": r["event"], "n": 0, "alert": [], "sev": []})
        u["n"] += 1
        if r["alert"] >= 0:
            u["alert"].append(r["alert"])
        if r["severity"] >= 0:
            u["sev"].append(r["severity"])
    return list(agg.values())


def targets(U, idx):
    """Hard targets and class-balanced weights for the unique rows `idx`."""
    n = len(idx)
    at, aw, st, sw = np.zeros(n), np.zeros(n), np.zeros((n, K)), np.zeros(n)
    for j, i in enumerate(idx):
        u = U[i]
        if u["alert"]:
            at[j], aw[j] = np.mean(u["alert"]), np.sqrt(len(u["alert"]))
        if u["sev"]:
            st[j] = np.bincount(u["sev"], minlength=K) / len(u["sev"])
            sw[j] = np.sqrt(len(u["sev"]))
    pos = aw * (at >= 0.5)
    if pos.sum() > 0:   # balance alert vs normal total weight
        aw = np.where(at >= 0.5, aw * (aw.sum() - pos.sum()) / pos.sum(), aw)
    m = aw[aw > 0].mean() if (aw > 0).any() else 1.0  # after balancing BGL
    for j, i in enumerate(idx):   # weak alert labels: error/fatal -> 1, debug/info -> 0 (warn unused)
        u = U[i]
        lab = [s for s in u["sev"] if s != 2]
        if not u["alert"] and lab:
            at[j], aw[j] = np.mean([s >= 3 for s in lab]), WEAK * m * np.sqrt(len(lab))
    mass = (st * sw[:, None]).sum(axis=0)           # per severity class, inverse-sqrt balancing
    cw = np.where(mass > 0, 1.0 / np.sqrt(np.maximum(mass, 1e-9)), 0.0)
    sw = sw * (st @ cw)
    return at, aw, st, sw


def fit_pair(U, idx, XT, XS):
    """Teacher on hard labels; student distilled from the teacher on the same rows (labelled or
    not), then fake-quantized to int8 weights. Returns (teacher, student)."""
    at, aw, st, sw = targets(U, idx)
    t = T.MLP(XT.shape[1], TEACHER["hidden"], K, SEED).fit(XT[idx], at, aw, st, sw, TEACHER["steps"])
    P = t.predict(XT[idx])
    sat = np.where(aw > 0, HARD * at + (1 - HARD) * P[:, 0], P[:, 0])
    sst = np.where((sw > 0)[:, None], HARD * st + (1 - HARD) * P[:, 1:], P[:, 1:])
    n = np.array([np.sqrt(U[i]["n"]) for i in idx])
    saw = np.where(aw > 0, aw, 0.2 * n * aw[aw > 0].mean())    # unlabelled rows: teacher only, light
    ssw = np.where(sw > 0, sw, 0.2 * n * sw[sw > 0].mean())
    s = T.MLP(XS.shape[1], STUDENT["hidden"], K, SEED + 1).fit(XS[idx], sat, saw, sst, ssw, STUDENT["steps"])
    return t, T.fake_quant(s)


def cross_validate(U, XT, XS, group):
    """Out-of-fold predictions; folds are made of whole groups (shuffled with SEED)."""
    groups = sorted({group(u) for u in U})
    random.Random(SEED).shuffle(groups)
    fold_of = {g: i % FOLDS for i, g in enumerate(groups)}
    oof_t, oof_s = np.zeros((len(U), 1 + K)), np.zeros((len(U), 1 + K))
    for f in range(FOLDS):
        tr = [i for i, u in enumerate(U) if fold_of[group(u)] != f]
        te = [i for i, u in enumerate(U) if fold_of[group(u)] == f]
        t, s = fit_pair(U, tr, XT, XS)
        oof_t[te], oof_s[te] = t.predict(XT[te]), s.predict(XS[te])
        leaked = {U[i]["event"] for i in te} & {U[i]["event"] for i in tr}
        print(f"  fold {f}: train {len(tr)} distinct, test {len(te)} distinct, events in both {len(leaked)}",
              flush=True)
    return oof_t, oof_s


def metrics(U, P):
    """Per LINE (each distinct content weighted by its line count)."""
    tp = fp = fn = tn = 0
    conf = np.zeros((K, K), int)
    per_sys = collections.defaultdict(lambda: [0, 0])
    for u, p in zip(U, P):
        pred_alert = p[0] >= THRESHOLD
        for a in u["alert"]:
            tp += a and pred_alert
            fp += (not a) and pred_alert
            fn += a and not pred_alert
            tn += (not a) and not pred_alert
        ps = int(np.argmax(p[1:]))
        for s in u["sev"]:
            conf[s, ps] += 1
            per_sys[u["system"]][0] += s == ps
            per_sys[u["system"]][1] += 1
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    f1s = [2 * conf[c, c] / max(conf[c].sum() + conf[:, c].sum(), 1) for c in range(K) if conf[c].sum() > 0]
    return {"alert": {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn), "precision": round(prec, 4),
                      "recall": round(rec, 4), "f1": round(2 * prec * rec / max(prec + rec, 1e-12), 4)},
            "severity": {"lines": int(conf.sum()), "accuracy": round(float(np.trace(conf) / conf.sum()), 4),
                         "macro_f1_over_present_classes": round(float(np.mean(f1s)), 4),
                         "confusion_rows_true_cols_pred": conf.tolist(),
                         "accuracy_by_system": {k: round(v[0] / v[1], 4) for k, v in sorted(per_sys.items())}}}


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def sidecar(name, D, hidden):
    return {"kind": "log", "model": name, "width": D + C.N_NUMERIC, "outputs": 1 + K, "alert_column": 0,
            "severity_names": C.SEVERITIES, "alert_threshold": THRESHOLD, "hidden": hidden,
            "features": C.recipe(D)}


def golden_strings(rows):
    out, seen = [], set()
    for s in C.SYSTEMS:
        rs = [r for r in rows if r["system"] == s]
        picks = [rs[0], max(rs, key=lambda r: (r["alert"], r["severity"], -r["line"])), rs[len(rs) // 2]]
        for r in picks:
            if r["content"] not in seen:
                seen.add(r["content"])
                out.append({"source": f"{s}:{r['line']}", "content": r["content"]})
    hdfs = next(r["content"] for r in rows if r["system"] == "HDFS")
    out += [{"source": "synthetic:empty", "content": ""},
            {"source": "synthetic:unicode", "content": "Ошибка диска sda1: температура 95°C — 温度过高 ⚠️ İß ǅ \u00e9\u0301"},
            {"source": "synthetic:long (HDFS:1 x 120, ~11 KB)", "content": " ".join([hdfs] * 120)},
            {"source": "synthetic:many tokens, utf-8 split at the cap", "content": "x" * 4095 + "é and more"},
            {"source": "synthetic:tokens > max_tokens", "content": "a 0x1F " * 1000},
            {"source": "synthetic:controls and masks",
             "content": "\tERR\x00 blk_-6952295868487656571 0xDEADbeef 9f4ef63 t761 10.0.0.1:50010 "
                        + "y" * 45}]
    return out


def main():
    t0 = time.time()
    rows = C.load_lines()
    U = uniques(rows)
    contents = [u["content"] for u in U]
    XT = C.featurize_many(contents, TEACHER["D"]).astype(np.float64)
    XS = C.featurize_many(contents, STUDENT["D"]).astype(np.float64)
    n_bgl = sum(1 for r in rows if r["alert"] >= 0)
    n_alert = sum(1 for r in rows if r["alert"] == 1)
    print(f"{len(rows)} lines, {len(U)} distinct (system, content); BGL {n_bgl} lines, {n_alert} alerts "
          f"({len({u['content'] for u in U if 1 in u['alert']})} distinct alert strings, "
          f"{len({u['event'] for u in U if 1 in u['alert']})} alert templates); features {time.time() - t0:.1f}s",
          flush=True)
    res = {"counts": {"lines": len(rows), "distinct": len(U), "bgl_lines": n_bgl, "bgl_alert_lines": n_alert,
                      "severity_lines": sum(1 for r in rows if r["severity"] >= 0),
                      "severity_lines_by_class": dict(zip(C.SEVERITIES, np.bincount(
                          [r["severity"] for r in rows if r["severity"] >= 0], minlength=K).tolist()))},
           "config": {"teacher": TEACHER, "student": STUDENT, "folds": FOLDS, "hard_share": HARD,
                      "threshold": THRESHOLD, "seed": SEED}}
    for split, group in [("by_template", lambda u: u["event"]), ("by_content", lambda u: (u["system"], u["content"]))]:
        print(f"{FOLDS}-fold CV grouped {split}:", flush=True)
        oof_t, oof_s = cross_validate(U, XT, XS, group)
        res[f"cv_{split}"] = {"teacher": metrics(U, oof_t), "student": metrics(U, oof_s)}
        for who in ["teacher", "student"]:
            m = res[f"cv_{split}"][who]
            print(f"  {who}: alert {m['alert']}  severity acc {m['severity']['accuracy']} "
                  f"macroF1 {m['severity']['macro_f1_over_present_classes']}", flush=True)

    # ---- final models on all data, exported and re-scored through onnxruntime
    t, s = fit_pair(U, list(range(len(U))), XT, XS)
    paths = {}
    for name, mlp, D, int8 in [("teacher", t, TEACHER["D"], False), ("student_int8", s, STUDENT["D"], True)]:
        paths[name] = os.path.join(C.HERE, f"{name}.onnx")
        onnx.save(T.to_onnx(mlp, D + C.N_NUMERIC, f"log_{name}", int8), paths[name])
        with open(os.path.join(C.HERE, f"{name}.json"), "w") as fh:
            json.dump(sidecar(f"{name}.onnx", D, mlp.W1.shape[1]), fh, indent=1)
            fh.write("\n")
    sess = {k: ort_session(p) for k, p in paths.items()}
    out_t = sess["teacher"].run(["scores"], {"features": XT.astype(np.float32)})[0]
    out_s = sess["student_int8"].run(["scores"], {"features": XS.astype(np.float32)})[0]
    assert np.allclose(out_t, t.predict(XT), atol=1e-4) and np.allclose(out_s, s.predict(XS), atol=1e-4)
    res["in_sample_shipped_ort"] = {"teacher": metrics(U, out_t), "student": metrics(U, out_s)}
    res["shipped_student_vs_teacher"] = {
        "alert_decision_agreement_lines": round(float(sum(u["n"] * ((a[0] >= THRESHOLD) == (b[0] >= THRESHOLD))
                                                          for u, a, b in zip(U, out_t, out_s)) / len(rows)), 4),
        "severity_argmax_agreement_lines": round(float(sum(u["n"] * (np.argmax(a[1:]) == np.argmax(b[1:]))
                                                           for u, a, b in zip(U, out_t, out_s)) / len(rows)), 4)}

    # ---- latency: onnxruntime, 1 thread, batch 1, 20k runs after 1k warm-up, same real line
    res["ort_latency_us"] = {}
    for name, X in [("teacher", XT), ("student_int8", XS)]:
        x1 = X[:1].astype(np.float32)
        for _ in range(1000):
            sess[name].run(["scores"], {"features": x1})
        ts = []
        for _ in range(20000):
            a = time.perf_counter_ns()
            sess[name].run(["scores"], {"features": x1})
            ts.append(time.perf_counter_ns() - a)
        ts = np.array(ts) / 1000.0
        res["ort_latency_us"][name] = {"p50": round(float(np.median(ts)), 2), "p99": round(float(np.percentile(ts, 99)), 2)}
    ft = []
    for c in contents[:2000]:
        a = time.perf_counter_ns()
        C.featurize(c, STUDENT["D"])
        ft.append(time.perf_counter_ns() - a)
    res["python_featurize_us_p50"] = round(float(np.median(ft)) / 1000, 1)
    res["sizes_bytes"] = {os.path.basename(p): os.path.getsize(p) for p in paths.values()}
    res["ops"] = {k: sorted({n.op_type for n in onnx.load(p).graph.node}) for k, p in paths.items()}

    # ---- golden vectors
    gold = []
    for g in golden_strings(rows):
        ft_t = C.featurize(g["content"], TEACHER["D"])
        ft_s = C.featurize(g["content"], STUDENT["D"])
        gold.append({**g, "student_features": ft_s.tolist(), "teacher_features": ft_t.tolist(),
                     "student_scores": sess["student_int8"].run(["scores"], {"features": ft_s[None]})[0][0].tolist(),
                     "teacher_scores": sess["teacher"].run(["scores"], {"features": ft_t[None]})[0][0].tolist()})
    with open(os.path.join(C.HERE, "golden.json"), "w") as fh:
        json.dump({"severity_names": C.SEVERITIES, "threshold": THRESHOLD, "cases": gold}, fh)
    res["golden_cases"] = len(gold)
    res["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(C.HERE, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1)
        fh.write("\n")
    print(json.dumps({k: res[k] for k in ["in_sample_shipped_ort", "shipped_student_vs_teacher", "ort_latency_us",
                                          "sizes_bytes", "python_featurize_us_p50", "seconds"]}, indent=1))


if __name__ == "__main__":
    main()
