#!/usr/bin/env bash
# A simulated outage of the uplink, replayed fast: uplink bytes vs raw bytes, and how fast the
# agent's outbox drains when the sink comes back.
#
# 1. A fresh Mosquitto, an edge-agent (bench profile, configs/demo.toml: durable journal and
#    outbox, sensor model, 60 s windows) whose sink URL points at a port nobody listens on.
# 2. load-gen publishes DEVICES devices x 8 SKAB metrics (125 x 8 = 1,000 series) with a
#    simulated timeline: each device's messages are STEP_MS apart in event time, starting
#    SPAN_H hours before now, as fast as RATE msg/s allows. The windows close as event time
#    advances, so the outbox fills with SPAN_H hours of sealed batches in minutes of wall time.
#    (Event time only: the agent's wall-clock timers -- batch interval, idle close -- run at
#    wall speed, so batches hold more windows each than a real day's would.)
# 3. Once the agent consumed every message and its outbox stopped growing, the cloud-sink is
#    started on that port; drain time = sink start -> agent outbox empty (edge_agent_outbox_batches
#    == 0). It includes the agent's retry backoff (at most uplink.retry_max = 5 s in demo.toml).
# Raw bytes = the JSON payloads published (load-gen); uplink bytes = the sink's
# cloud_sink_received_bytes_total (request bodies as sent: gzip).
#
# Usage: hil-tests/bench/outage_drain.sh [--span-h 24] [--step-ms 10000] [--rate 10000]
#          [--devices 125] [--agent-outbox-max-bytes N] [--agent-cache-bytes N]
#          [--agent-relative-error A] [--out DIR]
# --agent-outbox-max-bytes sets [outbox] max_bytes (the store cap; default in the agent, 256 MiB),
# --agent-relative-error sets [uplink] relative_error (window values' rounding; default 0.0001),
# --agent-cache-bytes sets [journal] cache_bytes (sled's page cache).
# Prints one JSON line (also appended to OUT/drain.jsonl). Needs the bench-profile binaries:
#   cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins
# Not part of CI.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
SPAN_H=24
STEP_MS=10000
RATE=10000
DEVICES=125
OUT=""
AGENT_OUTBOX_MAX=""
AGENT_CACHE=""
AGENT_REL=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --span-h) SPAN_H=$2; shift 2 ;;
    --step-ms) STEP_MS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --agent-outbox-max-bytes) AGENT_OUTBOX_MAX=$2; shift 2 ;;
    --agent-cache-bytes) AGENT_CACHE=$2; shift 2 ;;
    --agent-relative-error) AGENT_REL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
for b in edge-agent cloud-sink load-gen; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b (cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins)" >&2; exit 1; }
done
OUT=${OUT:-$BENCH/results/drain-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"; T=$(cd "$OUT" && pwd)

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
MQ=$(port); SINK=$(port); MPORT=$(port)
cat > "$T/mosquitto.conf" <<CONF
listener $MQ 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
CONF
/usr/sbin/mosquitto -c "$T/mosquitto.conf" > "$T/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_for 10 mosquitto_sub -h 127.0.0.1 -p "$MQ" -t '$SYS/broker/version' -C 1 -W 1

write_sink_config "$T/sink.toml" "$SINK" "$T"
write_agent_config "$T/agent.toml" "$T/agent" "$MQ" "$SINK" "$MPORT"
[[ -z $AGENT_OUTBOX_MAX ]] || printf '\n[outbox]\nmax_bytes = %s\n' "$AGENT_OUTBOX_MAX" >> "$T/agent.toml"
[[ -z $AGENT_REL ]] || sed -i "s/^\[uplink\]\$/[uplink]\nrelative_error = $AGENT_REL/" "$T/agent.toml"
[[ -z $AGENT_CACHE ]] || sed -i "s/^\[journal\]\$/[journal]\ncache_bytes = $AGENT_CACHE/" "$T/agent.toml"
(cd "$T" && EDGE_TOKEN=bench-token exec "$BIN/edge-agent" --config "$T/agent.toml" > "$T/agent.log" 2>&1) &
APID=$!; PIDS+=("$APID")
wait_for 30 curl -sf "http://127.0.0.1:$MPORT/metrics"
wait_for 30 grep -q "mqtt subscribed" "$T/agent.log"

NOW_MS=$(date +%s%3N)
START_MS=$(( NOW_MS - SPAN_H * 3600000 ))
PER_DEVICE=$(( SPAN_H * 3600000 / STEP_MS ))
COUNT=$(( PER_DEVICE * DEVICES ))
echo "publishing $COUNT messages ($PER_DEVICE per device, event step $STEP_MS ms, $SPAN_H h) at $RATE msg/s" >&2
T_PUB=$(date +%s.%N)
"$BIN/load-gen" --broker "127.0.0.1:$MQ" --devices "$DEVICES" --rate "$RATE" --secs 1e9 --count "$COUNT" \
  --event-start-ms "$START_MS" --event-step-ms "$STEP_MS" > "$T/load.json" 2> "$T/load.err"
T_PUB_END=$(date +%s.%N)
PUBLISHED=$(python3 -c "import json; print(json.load(open('$T/load.json'))['acked'])")
consumed_all() { [[ $(metric "$MPORT" edge_agent_messages_total) -ge $PUBLISHED ]]; }
wait_for 1800 consumed_all
T_CONSUMED=$(date +%s.%N)
# Outbox settled: the same batch count on two reads 5 s apart (the last windows close after
# idle_close = 3 s, then one batch interval).
prev=-1
while :; do
  cur=$(metric "$MPORT" edge_agent_outbox_batches)
  [[ $cur == "$prev" ]] && break
  prev=$cur; sleep 5
done
curl -sf "http://127.0.0.1:$MPORT/metrics" > "$T/agent.before.metrics"
BATCHES=$(metric "$MPORT" edge_agent_outbox_batches)
OBYTES=$(metric "$MPORT" edge_agent_outbox_bytes)
RSS_BEFORE=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$APID/status")
LOAD_DRAIN=$(cut -d' ' -f1-3 /proc/loadavg)
CPU0=$(awk '{print $14 + $15}' "/proc/$APID/stat")
echo "outbox: $BATCHES batches, $OBYTES bytes; starting the sink" >&2

T_SINK=$(date +%s.%N)
"$BIN/cloud-sink" --config "$T/sink.toml" > "$T/sink.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
outbox_empty() { [[ $(metric "$MPORT" edge_agent_outbox_batches) -eq 0 ]]; }
wait_for 3600 outbox_empty
T_DRAINED=$(date +%s.%N)
CPU1=$(awk '{print $14 + $15}' "/proc/$APID/stat")
HWM=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$APID/status")
curl -sf "http://127.0.0.1:$MPORT/metrics" > "$T/agent.after.metrics"
curl -sf "http://127.0.0.1:$SINK/metrics" > "$T/sink.metrics"
python3 - "$T" <<PY
import json, re, sys
T = sys.argv[1]
def m(path, name):
    s = 0.0
    for line in open(path):
        if line.startswith(name + " ") or line.startswith(name + "{"):
            s += float(line.split()[-1])
    return s
load = json.load(open(f"{T}/load.json"))
sink, before = f"{T}/sink.metrics", f"{T}/agent.before.metrics"
up = m(sink, "cloud_sink_received_bytes_total")
wins = m(sink, "cloud_sink_windows_stored_total")
drain = $T_DRAINED - $T_SINK
rec = {
  "span_h": $SPAN_H, "step_ms": $STEP_MS, "devices": $DEVICES, "series": $DEVICES * 8,
  "published": $PUBLISHED, "publish_s": round($T_PUB_END - $T_PUB, 1),
  "consumed_s": round($T_CONSUMED - $T_PUB, 1), "offered_rate": $RATE,
  "outbox_batches": $BATCHES, "outbox_bytes": $OBYTES,
  "rolled_up_windows": m(before, "edge_agent_rolled_up_windows_total"),
  "dropped_windows": m(before, "edge_agent_dropped_windows_total"),
  "agent_outbox_max_bytes": int("${AGENT_OUTBOX_MAX:-0}") or None,
  "agent_cache_bytes": int("${AGENT_CACHE:-0}") or None,
  "agent_relative_error": "${AGENT_REL:-default}",
  "drain_s": round(drain, 2), "sink_windows_stored": wins,
  "windows_per_s": round(wins / drain, 0), "sink_bytes_received": up,
  "raw_payload_bytes": load["payload_bytes"], "raw_over_uplink": round(load["payload_bytes"] / up, 1) if up else None,
  "agent_cpu_s_during_drain": ($CPU1 - $CPU0) / $(getconf CLK_TCK),
  "agent_rss_kib_before_drain": $RSS_BEFORE, "agent_vmhwm_kib": $HWM,
  "load_avg_start": "$LOAD_START", "load_avg_at_drain": "$LOAD_DRAIN",
}
print(json.dumps(rec))
open(f"{T}/drain.jsonl", "a").write(json.dumps(rec) + "\n")
PY
