"""Shared data loading, feature recipe, post-processing and scoring for the SKAB sensor model."""
import csv
import glob
import os
import subprocess
import sys

import numpy as np

SKAB_ROOT = os.environ.get("SKAB_ROOT", os.path.join(os.path.dirname(__file__), "../../../shared/data/SKAB"))
SKAB_ROOT = os.path.abspath(SKAB_ROOT)
SCORER = os.path.abspath(os.path.join(SKAB_ROOT, "../../eval/skab_score.py"))
CHANNELS = ["Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature",
            "Thermocouple", "Voltage", "Volume Flow RateRMS"]
CALIB_ROWS = 400


def read_skab(path):
    """Returns (datetimes list, X float64 [T,8], y int [T] or None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    dt = [r["datetime"] for r in rows]
    X = np.array([[float(r[c]) for c in CHANNELS] for r in rows], dtype=np.float64)
    y = np.array([int(float(r["anomaly"])) for r in rows]) if "anomaly" in rows[0] else None
    return dt, X, y


def labelled_files():
    """Relative paths (to SKAB_ROOT) of all labelled files, sorted."""
    out = []
    for p in sorted(glob.glob(os.path.join(SKAB_ROOT, "**", "*.csv"), recursive=True)):
        with open(p) as f:
            if "anomaly" in f.readline():
                out.append(os.path.relpath(p, SKAB_ROOT))
    return out


def anomaly_free_file():
    return os.path.join(SKAB_ROOT, "data", "anomaly-free", "anomaly-free.csv")


# ---------------------------------------------------------------- feature recipe (Rust reimplements)
K = 10            # trailing window (rows) averaged per channel
Z_CLIP = 8.0      # clip of per-row z-scores
F_CLIP = 20.0     # clip of final features
SD_FLOOR_REL = 1e-3   # sd floor = SD_FLOOR_REL*|mean| + SD_FLOOR_ABS
SD_FLOOR_ABS = 1e-6
S_EPS = 1e-6


def rollmean(s, n):
    """Trailing mean over the last n values (fewer at the start of the series)."""
    s = np.asarray(s, dtype=np.float64)
    c = np.concatenate([np.zeros((1,) + s.shape[1:]), np.cumsum(s, axis=0)])
    i = np.arange(len(s))
    lo = np.maximum(0, i - n + 1)
    if s.ndim == 1:
        return (c[i + 1] - c[lo]) / (i + 1 - lo)
    return (c[i + 1] - c[lo]) / (i + 1 - lo)[:, None]


def calibrate(Xcal):
    """Per-device calibration from its first CALIB_ROWS rows: mu, sd (raw rows), s (std of K-means of z)."""
    mu = Xcal.mean(0)
    sd = np.maximum(Xcal.std(0), SD_FLOOR_REL * np.abs(mu) + SD_FLOOR_ABS)
    z = np.clip((Xcal - mu) / sd, -Z_CLIP, Z_CLIP)
    s = rollmean(z, K).std(0) + S_EPS
    return {"mu": mu, "sd": sd, "s": s}


def features(X, cal):
    """Feature vector per row i: f_c = clip(mean_{j in last K rows up to i} z_jc / s_c, +-F_CLIP)."""
    z = np.clip((X - cal["mu"]) / cal["sd"], -Z_CLIP, Z_CLIP)
    return np.clip(rollmean(z, K) / cal["s"], -F_CLIP, F_CLIP).astype(np.float32)


def teacher_score_np(F):
    """Reference float score = log(1 + mean_c f_c^2) (diagonal T^2 energy on window means)."""
    F = F.astype(np.float32)
    return np.log1p(np.mean(F * F, axis=1, dtype=np.float32)).astype(np.float32)


def alarms(scores, S, q, m):
    """Post-processing: smooth = trailing mean of the last S scores; threshold = q-quantile (numpy
    'linear') of smooth over calibration rows 0..CALIB_ROWS-1, times m; alarm where smooth > threshold."""
    sm = rollmean(scores, S)
    thr = np.quantile(sm[:CALIB_ROWS], q) * m
    return (sm > thr).astype(int), thr


def confusion(y, p):
    y, p = y[CALIB_ROWS:], p[CALIB_ROWS:]
    return np.array([np.sum((y == 1) & (p == 1)), np.sum((y == 0) & (p == 1)),
                     np.sum((y == 1) & (p == 0)), np.sum((y == 0) & (p == 0))])


def metrics(c):
    tp, fp, fn, tn = c
    return tp / (tp + (fn + fp) / 2), 100 * fp / (fp + tn), 100 * fn / (fn + tp)


def write_predictions(outdir, preds, dts):
    for rel, p in preds.items():
        path = os.path.join(outdir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["datetime", "anomaly"])
            for d, a in zip(dts[rel], p):
                w.writerow([d, int(a)])


def official_score(preds, dts, outdir, subset=None):
    """Writes predictions and runs the official scorer. With subset, scores a data dir of symlinks
    (outside the repo) holding only those files. Returns the scorer's output line."""
    import shutil
    import tempfile
    data = SKAB_ROOT
    if subset is not None:
        data = tempfile.mkdtemp(prefix="skab_subset_")
        for rel in subset:
            os.makedirs(os.path.dirname(os.path.join(data, rel)), exist_ok=True)
            os.symlink(os.path.join(SKAB_ROOT, rel), os.path.join(data, rel))
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    write_predictions(outdir, {r: preds[r] for r in (subset or preds)}, dts)
    out = subprocess.run([sys.executable, SCORER, data, outdir], capture_output=True, text=True, check=True)
    return out.stdout.strip()
