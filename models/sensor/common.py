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
# Per device: calibration from rows 0..CALIB_ROWS-1 (assumed normal), then per row i, causally:
#   z_i  = clip((x_i - mu) / sd, +-Z_CLIP)                                   (8 channels)
#   zl_i = z_i, except for SLOW channels: z_i - mean(z_j, j in last SLOW_L rows up to i)
#   block "mean W" (W in MEAN_WINDOWS): clip(mean(zl_j, last W rows) / s_W, +-F_CLIP),
#       s_W = std over calibration rows of that trailing mean + S_EPS
#   block "std W" (W = STD_WINDOW): clip(log(std(z_j, last W rows) / r + LOG_EPS), +-LS_CLIP),
#       r = mean over calibration rows of that trailing std + R_EPS
# "last W rows up to i" = rows max(0, i-W+1)..i (fewer at the start); std is population (ddof 0).
# Feature vector = [mean 10 (8) | mean 60 (8) | std 30 (8)] -> WIDTH = 24, float64 -> float32.
K = 10            # legacy name: the shortest trailing window
MEAN_WINDOWS = (10, 60)
STD_WINDOW = 30
SLOW = (4, 5)     # Temperature, Thermocouple: slow thermal drift, judged vs their own trailing level
SLOW_L = 300
Z_CLIP = 8.0
F_CLIP = 20.0
LS_CLIP = 5.0
LOG_EPS = 1e-3
R_EPS = 1e-3
SD_FLOOR_REL = 1e-3   # sd floor = SD_FLOOR_REL*|mean| + SD_FLOOR_ABS
SD_FLOOR_ABS = 1e-6
S_EPS = 1e-6
WIDTH = 8 * (len(MEAN_WINDOWS) + 1)
# rows of history that rebuild a feature vector exactly (longest chain: mean 60 of slow-detrended z)
FEATURE_HISTORY = SLOW_L + max(MEAN_WINDOWS) - 1


def rollmean(s, n):
    """Trailing mean over the last n values (fewer at the start of the series)."""
    s = np.asarray(s, dtype=np.float64)
    c = np.concatenate([np.zeros((1,) + s.shape[1:]), np.cumsum(s, axis=0)])
    i = np.arange(len(s))
    lo = np.maximum(0, i - n + 1)
    if s.ndim == 1:
        return (c[i + 1] - c[lo]) / (i + 1 - lo)
    return (c[i + 1] - c[lo]) / (i + 1 - lo)[:, None]


def rollstd(z, n):
    """Trailing population std over the last n rows (fewer at the start), two-pass per window."""
    out = np.empty_like(z)
    for i in range(len(z)):
        w = z[max(0, i - n + 1):i + 1]
        out[i] = np.sqrt(np.mean((w - w.mean(0)) ** 2, axis=0))
    return out


def _raw_blocks(X, mu, sd):
    z = np.clip((X - mu) / sd, -Z_CLIP, Z_CLIP)
    zl = z.copy()
    for c in SLOW:
        zl[:, c] = z[:, c] - rollmean(z[:, c], SLOW_L)
    means = [rollmean(zl, w) for w in MEAN_WINDOWS]
    return means, rollstd(z, STD_WINDOW)


def calibrate(Xcal):
    """Per-device calibration from its first CALIB_ROWS rows."""
    mu = Xcal.mean(0)
    sd = np.maximum(Xcal.std(0), SD_FLOOR_REL * np.abs(mu) + SD_FLOOR_ABS)
    means, v = _raw_blocks(Xcal, mu, sd)
    return {"mu": mu, "sd": sd, "s": np.array([m.std(0) + S_EPS for m in means]), "r": v.mean(0) + R_EPS}


def features(X, cal):
    """[N, WIDTH] float32 causal features (see recipe above)."""
    means, v = _raw_blocks(X, cal["mu"], cal["sd"])
    blocks = [np.clip(m / s, -F_CLIP, F_CLIP) for m, s in zip(means, cal["s"])]
    blocks.append(np.clip(np.log(v / cal["r"] + LOG_EPS), -LS_CLIP, LS_CLIP))
    return np.hstack(blocks).astype(np.float32)


def teacher_score_np(F, w):
    """Reference float score = log(1 + sum_k w_k f_k^2) (learned non-negative weighted energy)."""
    F = F.astype(np.float64)
    return np.log1p((F * F) @ w)


def alarms(scores, S, t):
    """Post-processing: smooth = trailing mean of the last S scores; alarm where smooth > t
    (t is an absolute threshold on the per-device-normalised score, chosen on training files)."""
    sm = rollmean(scores, S)
    return (sm > t).astype(int), float(t)


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
