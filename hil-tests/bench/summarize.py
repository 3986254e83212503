#!/usr/bin/env python3
"""Markdown tables from compare.sh results (one JSON line per trial).

Usage: python3 hil-tests/bench/summarize.py OUT/results.jsonl [more.jsonl ...]

Per (rate, contestant): trials that kept up / trials, median and range of CPU % of one core,
CPU us per message, median VmRSS over the steady interval, VmHWM; the load average range at
trial start. Then, per rate, the CPU-per-message ratio of each peer to edge-agent (medians of
the same run). Agent trials run with --agent-cache-bytes / --agent-outbox-max-bytes get a row
of their own per setting (e.g. "edge-agent (durable) [cache 16 MiB]"); the ratios use the agent
at its defaults only.
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["mosquitto_sub", "agent", "python", "node-red"]
NAMES = {"agent": "edge-agent (durable)", "mosquitto_sub": "mosquitto_sub -q 1",
         "python": "Python paho + onnxruntime", "node-red": "Node-RED 4.1.8"}


def med_rng(xs, fmt="{:.1f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def variant(r):
    """The agent's non-default settings in a trial, as a label ("" = defaults)."""
    parts = []
    if r.get("agent_cache_bytes"):
        parts.append(f"cache {r['agent_cache_bytes'] / 2**20:g} MiB")
    if r.get("agent_outbox_max_bytes"):
        parts.append(f"cap {r['agent_outbox_max_bytes'] / 2**20:g} MiB")
    return ", ".join(parts)


def main(paths):
    recs = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    by = defaultdict(list)
    variants = defaultdict(dict)  # contestant -> label -> sort key
    for r in recs:
        v = variant(r)
        variants[r["contestant"]][v] = (r.get("agent_cache_bytes") or 0,
                                        r.get("agent_outbox_max_bytes") or 0)
        by[(r["rate"], r["contestant"], v)].append(r)
        if not v:
            by[(r["rate"], r["contestant"])].append(r)
    rates = sorted({r["rate"] for r in recs})
    print("| offered msg/s | contestant | kept up | consumed msg/s | CPU % of a core | CPU µs/msg | "
          "VmRSS MiB (median) | VmHWM MiB | broker CPU % | load avg at start |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
    for rate in rates:
        for c, v in ((c, v) for c in ORDER for v in sorted(variants[c], key=variants[c].get)):
            rs = by.get((rate, c, v))
            if not rs:
                continue
            # Kept up: backlog grew by <= 1 s of traffic over the steady interval and every
            # published message was consumed by the final count (read <= 10 s after the end).
            kept = sum(r["consumed"] >= r["published"] and r["lag_s_end"] - r["lag_s_start"] <= 1.0
                       for r in rs)
            loads = [float(r["load_avg"].split()[0]) for r in rs]
            name = f"{NAMES[c]} [{v}]" if v else NAMES[c]
            print(f"| {rate:,.0f} | {name} | {kept}/{len(rs)} | "
                  f"{med_rng([r['consumed_rate'] for r in rs], '{:,.0f}')} | "
                  f"{med_rng([r['cpu_pct'] for r in rs])} | "
                  f"{med_rng([r['cpu_us_per_msg'] for r in rs])} | "
                  f"{med_rng([r['rss_kib_median'] / 1024 if r['rss_kib_median'] else None for r in rs])} | "
                  f"{med_rng([r['vmhwm_kib'] / 1024 for r in rs])} | "
                  f"{med_rng([r['broker_cpu_pct'] for r in rs])} | "
                  f"{min(loads):.2f}–{max(loads):.2f} |")
    print()
    print("| offered msg/s | peer | peer CPU µs/msg ÷ edge-agent's (medians) | edge-agent RSS ÷ peer's |")
    print("|---:|---|---:|---:|")
    for rate in rates:
        a = by.get((rate, "agent"))
        if not a:
            continue
        acpu = statistics.median(r["cpu_us_per_msg"] for r in a)
        arss = statistics.median(r["rss_kib_median"] for r in a)
        for c in ORDER:
            if c == "agent" or not by.get((rate, c)):
                continue
            p = by[(rate, c)]
            pcpu = statistics.median(r["cpu_us_per_msg"] for r in p)
            prss = statistics.median(r["rss_kib_median"] for r in p)
            print(f"| {rate:,.0f} | {NAMES[c]} | {pcpu / acpu:.2f}× | {arss / prss:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    main(sys.argv[1:])
