#!/usr/bin/env bash
# tract vs onnxruntime on the committed sensor and log models, one run, same inputs, single thread.
# Needs the models venv: python3 -m venv models/.venv && models/.venv/bin/pip install -r models/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
for i in 1 2 3; do
  echo "--- run $i"
  cargo bench -q -p edge-agent --bench model_latency 2>/dev/null
  models/.venv/bin/python models/bench_ort.py
done
