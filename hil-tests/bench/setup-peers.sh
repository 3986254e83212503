#!/usr/bin/env bash
# Installs the benchmark peers into ignored folders under hil-tests/bench:
#   .venv/                      Python venv with peers/requirements.txt (paho-mqtt, onnxruntime, numpy)
#   peers/node-red/node_modules Node-RED at the version pinned in peers/node-red/package-lock.json
# Needs python3 (venv) and Node.js >= 18 with npm; reaches PyPI and the npm registry.
#
# Usage: hil-tests/bench/setup-peers.sh
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
BENCH=$(cd "$(dirname "$0")" && pwd)
[[ -x $BENCH/.venv/bin/python ]] || python3 -m venv "$BENCH/.venv"
"$BENCH/.venv/bin/pip" install -q -r "$BENCH/peers/requirements.txt"
(cd "$BENCH/peers/node-red" && npm ci --no-audit --no-fund)
echo "peers ready: $BENCH/.venv, $BENCH/peers/node-red/node_modules" >&2
