#!/usr/bin/env bash
# The template miner vs drain3 (the maintained Python Drain), same lines, same machine, one run:
# our criterion bench (cold/<System> and warm/all lines/s), then drain3's default configuration
# on the same Content columns (lines/s and GA from the official scorer), three rounds.
# Makes its own venv for drain3 under target/ (PyPI only; nothing is fetched at run time after).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/drain3-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q drain3==0.9.11
fi
for i in 1 2 3; do
  echo "--- run $i"
  cargo bench -q -p edge-agent --bench template_miner 2>/dev/null | grep -E "^(cold|warm)/|thrpt|templates"
  "$venv/bin/python" edge-agent/bench/drain3_peer.py --repeat 3
done
