#!/usr/bin/env bash
# Uplink bytes vs raw bytes in live operation: a fleet publishing in real time (1 Hz per device),
# the sink up all along, so each batch holds what closed since the last one (about one 60 s window
# per series), the case outage_drain.sh does not cover (its batches hold hours of one series).
#
# 1. A fresh Mosquitto, a cloud-sink, an edge-agent (bench profile, configs/demo.toml: durable
#    journal and outbox, sensor model, 60 s windows, uplink gzip) pointed at that sink.
# 2. load-gen publishes DEVICES devices x 8 SKAB metrics (125 x 8 = 1,000 series), each device one
#    message per second of wall time (ts = the wall clock), for MINUTES minutes.
# 3. Then it waits until the agent's outbox is empty and stays so for 10 s after the last
#    window closed (idle_close), and reads the totals.
# Raw bytes = the JSON payloads published (load-gen); uplink bytes = the sink's
# cloud_sink_received_bytes_total (request bodies as sent: gzip). Windows that the run cuts at
# its two ends (partial minutes) are counted on both sides, so they do not flatter the ratio.
#
# Usage: hil-tests/bench/uplink_live.sh [--minutes 10] [--devices 125] [--relative-error A]
#          [--out DIR]
# --relative-error sets the agent's [uplink] relative_error (default: the agent's, 0.0001; 0 is
# exact). Prints one JSON line (also appended to OUT/uplink.jsonl). Needs the bench-profile
# binaries (CARGO_TARGET_DIR/release):
#   cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins
# Not part of CI: it runs for MINUTES minutes of wall time.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
MINUTES=10
DEVICES=125
REL=""
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --relative-error) REL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/hil-tests/bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
for b in edge-agent cloud-sink load-gen; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b (cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins)" >&2; exit 1; }
done
OUT=${OUT:-$BENCH/results/uplink-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"; T=$(cd "$OUT" && pwd)

MQ=$(port); SINK=$(port); MPORT=$(port)
cat > "$T/mosquitto.conf" <<CONF
listener $MQ 127.0.0.1
allow_anonymous true
persistence false
CONF
/usr/sbin/mosquitto -c "$T/mosquitto.conf" > "$T/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_for 10 mosquitto_sub -h 127.0.0.1 -p "$MQ" -t '$SYS/broker/version' -C 1 -W 1

write_sink_config "$T/sink.toml" "$SINK" "$T"
"$BIN/cloud-sink" --config "$T/sink.toml" > "$T/sink.log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$SINK/v1/health"
write_agent_config "$T/agent.toml" "$T/agent" "$MQ" "$SINK" "$MPORT"
[[ -z $REL ]] || sed -i "s/^\[uplink\]\$/[uplink]\nrelative_error = $REL/" "$T/agent.toml"
(cd "$T" && EDGE_TOKEN=bench-token exec "$BIN/edge-agent" --config "$T/agent.toml" > "$T/agent.log" 2>&1) &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$MPORT/metrics"
wait_for 30 grep -q "mqtt subscribed" "$T/agent.log"

echo "publishing $DEVICES devices at 1 Hz for $MINUTES min (wall clock)" >&2
"$BIN/load-gen" --broker "127.0.0.1:$MQ" --devices "$DEVICES" --rate "$DEVICES" \
  --secs "$(( MINUTES * 60 ))" > "$T/load.json" 2> "$T/load.err"
PUBLISHED=$(python3 -c "import json; print(json.load(open('$T/load.json'))['acked'])")
consumed_all() { [[ $(metric "$MPORT" edge_agent_messages_total) -ge $PUBLISHED ]]; }
wait_for 120 consumed_all
# Settled: outbox empty and the sink's window count unchanged over 10 s (idle_close is 3 s).
prev=-1
while :; do
  sleep 10
  cur=$(metric "$SINK" cloud_sink_windows_stored_total)
  [[ $cur == "$prev" && $(metric "$MPORT" edge_agent_outbox_batches) -eq 0 ]] && break
  prev=$cur
done
curl -sf "http://127.0.0.1:$SINK/metrics" > "$T/sink.metrics"
curl -sf "http://127.0.0.1:$MPORT/metrics" > "$T/agent.metrics"
python3 - "$T" "$MINUTES" "$DEVICES" "${REL:-default}" <<'PY'
import json, sys
T, minutes, devices, rel = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def m(path, name):
    return sum(float(l.split()[-1]) for l in open(path) if l.startswith(name + " ") or l.startswith(name + "{"))
load = json.load(open(f"{T}/load.json"))
up = m(f"{T}/sink.metrics", "cloud_sink_received_bytes_total")
wins = m(f"{T}/sink.metrics", "cloud_sink_windows_stored_total")
batches = m(f"{T}/sink.metrics", "cloud_sink_batches_total")
rec = {"minutes": minutes, "devices": devices, "series": devices * 8, "relative_error": rel,
       "published": load["acked"], "raw_payload_bytes": load["payload_bytes"],
       "sink_bytes_received": up, "sink_windows_stored": wins, "sink_batches": batches,
       "bytes_per_window": round(up / wins, 1) if wins else None,
       "raw_over_uplink": round(load["payload_bytes"] / up, 1) if up else None}
print(json.dumps(rec))
open(f"{T}/uplink.jsonl", "a").write(json.dumps(rec) + "\n")
PY
