#!/usr/bin/env bash
# End-to-end throughput through a real Mosquitto, durability on.
#
# Both contestants drain the same backlog: N SKAB messages (10 devices, JSON, QoS 1) that
# fleet-sim published into a persistent session while the subscriber was away.
#   peer:  mosquitto_sub -q 1 (receives and acks; keeps nothing)
#   agent: edge-agent (decode, window, journal group commit + flush, then PUBACK)
# Rate = N / (time from subscriber start until the last message is consumed). The agent's
# figure includes process start and store recovery. Median of RUNS runs, both measured in the
# same run on the same broker. Prints a markdown table row for BENCHMARKS.md.
#
# Usage: hil-tests/bench/e2e_throughput.sh [RUNS]   (default 5). Not part of CI.
# With BIN_DIR set (edge-agent, cloud-sink, fleet-sim), those binaries run and nothing is built.
set -euo pipefail
RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [[ -n ${BIN_DIR:-} ]]; then
  BIN=$BIN_DIR
else
  cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins -q
  BIN=$ROOT/target/release
fi
WORK=$(mktemp -d)
# shellcheck source=lib.sh
source "$ROOT/hil-tests/bench/lib.sh"  # before the trap below, which replaces lib.sh's
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

MQ=$(port); SINK=$(port)
cat > "$WORK/mosquitto.conf" <<CONF
listener $MQ 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
CONF
mosquitto -c "$WORK/mosquitto.conf" > "$WORK/mosquitto.log" 2>&1 &
HASH=$(printf bench-token | sha256sum | cut -d' ' -f1)
printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/sink"\n[[gateways]]\nid = "gw-bench"\ntoken_sha256 = "%s"\n' \
  "$SINK" "$WORK" "$HASH" > "$WORK/sink.toml"
"$BIN/cloud-sink" --config "$WORK/sink.toml" > "$WORK/sink.log" 2>&1 &
sleep 0.5

backlog() { "$BIN/fleet-sim" --broker "127.0.0.1:$MQ" --devices 10 --quiet > "$WORK/sim.log"; grep -o 'published [0-9]*' "$WORK/sim.log" | cut -d' ' -f2; }

peer_rate() {
  local id=bench-sub-$1
  timeout 5 mosquitto_sub -h 127.0.0.1 -p "$MQ" -q 1 -c -i "$id" -t 'plant/+/sensors' -C 1 -W 1 >/dev/null 2>&1 || true
  local n; n=$(backlog)
  local t0 t1; t0=$(date +%s.%N)
  mosquitto_sub -h 127.0.0.1 -p "$MQ" -q 1 -c -i "$id" -t 'plant/+/sensors' -C "$n" > /dev/null
  t1=$(date +%s.%N)
  python3 -c "print($n / ($t1 - $t0))"
}

agent_rate() {
  local dir=$WORK/agent-$1
  mkdir -p "$dir"
  sed -e 's/^gateway_id = .*/gateway_id = "gw-bench"/' -e "s#^data_dir = .*#data_dir = \"$dir/data\"#" \
      -e "s/^port = 1883/port = $MQ/" -e "s#^url = .*#url = \"http://127.0.0.1:$SINK\"#" \
      -e "s/^client_id = .*/client_id = \"bench-agent-$1\"/" -e 's/^subscribe = .*/subscribe = ["plant\/+\/sensors"]/' \
      -e "s#^path = \"\.\./models/#path = \"$ROOT/models/#" \
      configs/demo.toml > "$dir/agent.toml"
  # First start creates the persistent session; then the backlog is published while it is away.
  EDGE_TOKEN=bench-token "$BIN/edge-agent" --config "$dir/agent.toml" > "$dir/first.log" 2>&1 &
  local pid=$!
  until grep -q "mqtt connected" "$dir/first.log"; do sleep 0.05; done
  sleep 0.3; kill -TERM $pid; wait $pid || true
  local n; n=$(backlog)
  local t0; t0=$(date +%s.%N)
  RUST_LOG=info,edge_agent::pipeline=debug EDGE_TOKEN=bench-token "$BIN/edge-agent" --config "$dir/agent.toml" > "$dir/run.log" 2>&1 &
  pid=$!
  until grep -q "total=$n\b" "$dir/run.log"; do sleep 0.02; done
  kill -TERM $pid; wait $pid || true
  python3 - "$dir/run.log" "$n" "$t0" <<'PY'
import sys, datetime
log, n, t0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
for line in open(log):
    if f"total={n}" in line:
        ts = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        print(n / (ts - t0)); break
PY
}

median() { python3 -c "import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:])))" "$@"; }
peers=(); agents=()
for i in $(seq "$RUNS"); do
  peers+=("$(peer_rate "$i")"); agents+=("$(agent_rate "$i")")
  echo "run $i: mosquitto_sub ${peers[-1]%.*} msg/s, edge-agent ${agents[-1]%.*} msg/s" >&2
done
P=$(median "${peers[@]}"); A=$(median "${agents[@]}")
echo "| e2e backlog drain, 33,767 msgs | mosquitto_sub -q 1: $P msg/s | edge-agent (durable): $A msg/s | ratio $(python3 -c "print(f'{$A/$P:.2f}')") |"
