#!/usr/bin/env python3
"""The peer for the template miner: drain3 (the maintained Python Drain) on the same lines.

Feeds each Loghub system's `Content` column (the input `template-eval` gives our miner) to one
fresh drain3 TemplateMiner with its default configuration, one pass, in file order; prints
lines/s (best of --repeat runs, mining only, single core) and, per system, GA and F1 from the
official scorer (../shared/eval/loghub_ga.py) on drain3's final cluster ids.

usage: drain3_peer.py [--data-dir ../shared/data/loghub] [--repeat 5]
Needs `pip install drain3` (see edge-agent/bench/template_miner.sh, which makes a venv).
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def systems(data_dir):
    for name in sorted(os.listdir(data_dir)):
        folder = os.path.join(data_dir, name)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if f.endswith("_structured.csv"):
                yield name, os.path.join(folder, f)


def contents(path):
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return [(int(r["LineId"]), r["Content"]) for r in csv.DictReader(f)]


def fresh_miner():
    config = TemplateMinerConfig()  # drain3's defaults: sim_th 0.4, depth 4, no masking
    config.profiling_enabled = False
    return TemplateMiner(config=config)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "loghub"))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    scorer = os.path.join(ROOT, "..", "shared", "eval", "loghub_ga.py")
    sets = [(name, path, contents(path)) for name, path in systems(args.data_dir)]
    if not sets:
        sys.exit(f"no *_structured.csv under {args.data_dir}")
    total = sum(len(lines) for _, _, lines in sets)
    best = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        for _, _, lines in sets:
            miner = fresh_miner()
            for _, text in lines:
                miner.add_log_message(text)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    print(f"drain3 {total} lines, best of {args.repeat}: {best * 1e3:.1f} ms = {total / best:,.0f} lines/s (cold miners)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, lines in sets:
            miner = fresh_miner()
            ids = [(line_id, miner.add_log_message(text)["cluster_id"]) for line_id, text in lines]
            pred = os.path.join(tmp, f"{name}.csv")
            with open(pred, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["LineId", "Group"])
                w.writerows(ids)
            out = subprocess.run([sys.executable, scorer, path, pred], capture_output=True, text=True, check=True)
            print(f"{name:<10} drain3 {out.stdout.strip()}")


if __name__ == "__main__":
    main()
