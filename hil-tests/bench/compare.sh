#!/usr/bin/env bash
# Comparative footprint / throughput harness: the same paced MQTT stream, through the same
# broker build on the same machine, consumed in turn by each contestant.
#
#   agent          edge-agent (bench-profile binary, configs/demo.toml as is: durable sled
#                  journal + outbox, sensor model, 60 s windows) syncing to a cloud-sink
#   mosquitto_sub  mosquitto_sub -q 1 (receives, acks, keeps nothing): the ceiling
#   python         hil-tests/bench/peers/paho_ort.py (paho-mqtt + onnxruntime: same decode,
#                  per-row sensor model and 60 s windows per series; no journal)
#   node-red       Node-RED (hil-tests/bench/peers/node-red): mqtt in -> function node
#                  folding 60 s windows per series (no model, no journal)
#
# Stream: hil-tests `load-gen`, DEVICES devices x 8 SKAB metrics (125 x 8 = 1,000 series),
# JSON, QoS 1, offered at RATE msg/s for WARMUP + STEADY seconds, event time = wall clock.
# Every trial gets a fresh Mosquitto (own port, no persistence, unlimited queue) so nothing
# carries over between trials; contestants alternate within each repetition.
#
# Measured over the STEADY interval (after WARMUP) from /proc/PID of the contestant:
#   CPU (utime+stime) -> % of one core and CPU us per message consumed in the interval;
#   VmRSS once a second -> median; VmHWM at the end (peak).
# Kept up: the contestant's backlog (published so far - consumed so far, in seconds of
# traffic) did not grow by more than 1 s over the interval, and it had consumed every
# published message within 10 s of the publisher's end. Consumed = the agent's
# edge_agent_messages_total (GET /metrics), mosquitto_sub's output lines, the peers' stats.
# Broker and load-gen CPU are recorded too; `uptime`'s load average at each trial's start.
#
# Results: one JSON line per trial in OUT/results.jsonl; summarize with
#   python3 hil-tests/bench/summarize.py OUT/results.jsonl
#
# Usage: hil-tests/bench/compare.sh [--contestants "agent mosquitto_sub python node-red"]
#          [--rates "1000 10000"] [--reps 3] [--warmup 15] [--steady 30] [--devices 125]
#          [--out DIR] [--agent-outbox-max-bytes N] [--agent-cache-bytes N]
#          [--broker-inflight N] [--agent-journal 'KEY = VALUE']... [--log-file PATH]
# --log-file makes the stream plain-text log lines of PATH (e.g. a Loghub sample), one per message,
# on plant/<device>/logs: the agent's text route (log model on every line, template mining);
# only the agent and mosquitto_sub take this workload (the peers window sensor rows).
# --agent-outbox-max-bytes adds [outbox] max_bytes = N to the agent's config (default cap:
# 256 MiB, which bounds the whole store, journal included).
# --agent-cache-bytes sets [journal] cache_bytes = N (sled's page cache; default in the agent).
# --agent-journal sets one [journal] key of the agent's config (repeatable), e.g.
# --agent-journal 'commit_max_messages = 256'; the first replaces demo.toml's line for that key.
# --broker-inflight sets Mosquitto's max_inflight_messages (default here 1000; Mosquitto's own
# default is 20): how many QoS 1 messages a subscriber may hold unacknowledged, i.e. the most
# one of the agent's group commits can take.
# The agent's /proc/PID/status and smaps_rollup at the end of the steady interval are kept in
# the trial directory (agent.status, agent.smaps_rollup).
# Needs the bench-profile binaries (not built here; 2-core etiquette):
#   cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins
# and, for the peers, hil-tests/bench/setup-peers.sh. Not part of CI. Binaries are taken from
# $BIN_DIR if set, else $CARGO_TARGET_DIR/release, else target/release.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
CONTESTANTS="agent mosquitto_sub python node-red"
RATES="1000 10000"
REPS=3
WARMUP=15
STEADY=30
DEVICES=125
OUT=""
AGENT_OUTBOX_MAX=""
AGENT_CACHE=""
BROKER_INFLIGHT=1000
AGENT_JOURNAL=()
LOG_FILE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --contestants) CONTESTANTS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --steady) STEADY=$2; shift 2 ;;
    --devices) DEVICES=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --agent-outbox-max-bytes) AGENT_OUTBOX_MAX=$2; shift 2 ;;
    --agent-cache-bytes) AGENT_CACHE=$2; shift 2 ;;
    --broker-inflight) BROKER_INFLIGHT=$2; shift 2 ;;
    --agent-journal) AGENT_JOURNAL+=("$2"); shift 2 ;;
    --log-file) LOG_FILE=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/../.." && pwd)
BIN=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
KIND=sensors
if [[ -n $LOG_FILE ]]; then
  KIND=logs
  [[ -r $LOG_FILE ]] || { echo "--log-file $LOG_FILE: not readable" >&2; exit 2; }
  for c in $CONTESTANTS; do
    [[ $c == agent || $c == mosquitto_sub ]] || { echo "--log-file: $c does not take the log workload (only agent, mosquitto_sub)" >&2; exit 2; }
  done
fi
need=(load-gen)
[[ " $CONTESTANTS " == *" agent "* ]] && need+=(edge-agent cloud-sink)
for b in "${need[@]}"; do
  [[ -x $BIN/$b ]] || { echo "missing $BIN/$b: build with cargo build --profile bench -p edge-agent -p cloud-sink -p hil-tests --bins" >&2; exit 1; }
done
OUT=${OUT:-$BENCH/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
CLK_TCK=$(getconf CLK_TCK)
PY=$BENCH/.venv/bin/python
NR=$BENCH/peers/node-red

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Stops PID with TERM; KILL after 10 s.
stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

start_broker() {
  MQ=$(port)
  cat > "$T/mosquitto.conf" <<CONF
listener $MQ 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages $BROKER_INFLIGHT
sys_interval 1
CONF
  /usr/sbin/mosquitto -c "$T/mosquitto.conf" > "$T/mosquitto.log" 2>&1 &
  BROKER_PID=$!; PIDS+=("$BROKER_PID")
  wait_for 10 mosquitto_sub -h 127.0.0.1 -p "$MQ" -t '$SYS/broker/version' -C 1 -W 1
}

# The contestant's subscription is live: Mosquitto's $SYS subscription count (updated once
# a second) reaches 2 = the contestant + this probe (probes never overlap).
subscribed() {
  local v
  v=$(mosquitto_sub -h 127.0.0.1 -p "$MQ" -t '$SYS/broker/subscriptions/count' -C 2 -W 2 2>/dev/null | tail -1 || true)
  [[ ${v:-0} -ge 2 ]]
}

start_agent() {
  SINK=$(port); MPORT=$(port)
  write_sink_config "$T/sink.toml" "$SINK" "$T"
  "$BIN/cloud-sink" --config "$T/sink.toml" > "$T/sink.log" 2>&1 &
  SINK_PID=$!; PIDS+=("$SINK_PID")
  wait_for 20 curl -sf "http://127.0.0.1:$SINK/metrics"
  write_agent_config "$T/agent.toml" "$T/agent" "$MQ" "$SINK" "$MPORT"
  [[ -z $AGENT_OUTBOX_MAX ]] || printf '\n[outbox]\nmax_bytes = %s\n' "$AGENT_OUTBOX_MAX" >> "$T/agent.toml"
  [[ -z $AGENT_CACHE ]] || sed -i "s/^\[journal\]\$/[journal]\ncache_bytes = $AGENT_CACHE/" "$T/agent.toml"
  local kv
  for kv in "${AGENT_JOURNAL[@]}"; do
    sed -i -e "/^${kv%% *} = /d" -e "s/^\[journal\]\$/[journal]\n$kv/" "$T/agent.toml"
  done
  (cd "$T" && EDGE_TOKEN=bench-token exec "$BIN/edge-agent" --config "$T/agent.toml" > "$T/agent.log" 2>&1) &
  CPID=$!; PIDS+=("$CPID")
  wait_for 30 curl -sf "http://127.0.0.1:$MPORT/metrics"
}
agent_count() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^edge_agent_messages_total/ {s += $NF} END {printf "%d\n", s}'
}

start_contestant() {
  case "$1" in
    agent) start_agent ;;
    mosquitto_sub)
      mosquitto_sub -h 127.0.0.1 -p "$MQ" -q 1 -i bench-sub -t "plant/+/$KIND" -F '%l' > "$T/sub.out" 2> "$T/sub.err" &
      CPID=$!; PIDS+=("$CPID") ;;
    python)
      "$PY" "$BENCH/peers/paho_ort.py" --port "$MQ" --stats "$T/stats" --outbox "$T/outbox.jsonl" > "$T/python.log" 2>&1 &
      CPID=$!; PIDS+=("$CPID") ;;
    node-red)
      mkdir -p "$T/nr"
      python3 - "$NR" "$MQ" "$T/stats" "$T/nr/flow.json" <<'PY'
import json, sys
nr, port, stats, out = sys.argv[1:]
flow = json.load(open(f"{nr}/flow.template.json"))
js = open(f"{nr}/window.js").read()
for n in flow:
    for k, v in list(n.items()):
        if isinstance(v, str):
            n[k] = v.replace("@PORT@", port).replace("@STATS@", stats).replace("@WINDOW_JS@", js)
json.dump(flow, open(out, "w"), indent=1)
PY
      NODE_RED_PORT=$(port) node "$NR/node_modules/node-red/red.js" --userDir "$T/nr" --settings "$NR/settings.js" > "$T/node-red.log" 2>&1 &
      CPID=$!; PIDS+=("$CPID") ;;
    *) echo "unknown contestant $1" >&2; exit 2 ;;
  esac
}
consumed() {
  case "$1" in
    agent) agent_count ;;
    mosquitto_sub) wc -l < "$T/sub.out" ;;
    python|node-red) { tail -n 1 "$T/stats" 2>/dev/null || echo "0 0"; } | awk '{print $2}' ;;
  esac
}

trial() {
  local c=$1 rate=$2 rep=$3
  T=$OUT/trials/$c-$rate-$rep
  rm -rf "$T"; mkdir -p "$T"
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  start_broker
  start_contestant "$c"
  wait_for 60 subscribed || { echo "$c never subscribed" >&2; return 1; }
  local total=$((WARMUP + STEADY))
  "$BIN/load-gen" --broker "127.0.0.1:$MQ" --devices "$DEVICES" --rate "$rate" --secs "$total" \
    ${LOG_FILE:+--log-file "$LOG_FILE"} \
    --progress "$T/load.progress" > "$T/load.json" 2> "$T/load.err" &
  local lpid=$!; PIDS+=("$lpid")
  local t_start; t_start=$(date +%s.%N)
  sleep "$WARMUP"
  local t0 cpu0 got0 bcpu0 lcpu0
  t0=$(date +%s.%N); cpu0=$(cpu_ticks "$CPID"); got0=$(consumed "$c")
  bcpu0=$(cpu_ticks "$BROKER_PID"); lcpu0=$(cpu_ticks "$lpid")
  # VmRSS once a second through the steady interval.
  local rss=() end_ns=$(( $(date +%s%N) + STEADY * 1000000000 ))
  while (( $(date +%s%N) < end_ns - 1000000000 )); do
    sleep 1
    rss+=("$(vm "$CPID" VmRSS)")
  done
  while (( $(date +%s%N) < end_ns )); do sleep 0.05; done
  local t1 cpu1 got1 bcpu1 lcpu1 hwm
  t1=$(date +%s.%N); cpu1=$(cpu_ticks "$CPID"); got1=$(consumed "$c")
  bcpu1=$(cpu_ticks "$BROKER_PID"); lcpu1=$(cpu_ticks "$lpid"); hwm=$(vm "$CPID" VmHWM)
  if [[ $c == agent ]]; then
    cat "/proc/$CPID/status" > "$T/agent.status" 2>/dev/null || true
    cat "/proc/$CPID/smaps_rollup" > "$T/agent.smaps_rollup" 2>/dev/null || true
  fi
  wait "$lpid" || echo "load-gen failed: $(cat "$T/load.err")" >&2
  local t_pub_end; t_pub_end=$(date +%s.%N)
  local published; published=$(python3 -c "import json; print(json.load(open('$T/load.json'))['acked'])" 2>/dev/null || echo 0)
  local drained=false
  all_consumed() { [[ $(consumed "$c") -ge $published ]]; }
  if wait_for 10 all_consumed; then drained=true; fi
  local t_drained; t_drained=$(date +%s.%N)
  local final; final=$(consumed "$c")
  if [[ $c == agent ]]; then
    curl -sf "http://127.0.0.1:$MPORT/metrics" > "$T/agent.metrics" || true
    curl -sf "http://127.0.0.1:$SINK/metrics" > "$T/sink.metrics" || true
  fi
  stop "$CPID"
  [[ $c == agent ]] && stop "$SINK_PID"
  stop "$BROKER_PID"
  python3 - "$RESULTS" <<PY
import json, statistics, sys
rss = [int(x) for x in "${rss[*]}".split() if x.isdigit() and int(x) > 0]
steady = $t1 - $t0
rate = $rate
try:
    start = json.load(open("$T/load.json"))["start_unix"]
except (OSError, ValueError, KeyError):
    start = $t_start
pub = lambda t: min($published, rate * (t - start))
lag0 = (pub($t0) - $got0) / rate
lag1 = (pub($t1) - $got1) / rate
msgs = $got1 - $got0
cpu_s = ($cpu1 - $cpu0) / $CLK_TCK
rec = {
  "contestant": "$c", "rate": rate, "rep": $rep, "devices": $DEVICES, "workload": "$KIND", "load_avg": "$load",
  "agent_cache_bytes": int("${AGENT_CACHE:-0}") or None,
  "agent_outbox_max_bytes": int("${AGENT_OUTBOX_MAX:-0}") or None,
  "agent_journal": "${AGENT_JOURNAL[*]}", "broker_inflight": $BROKER_INFLIGHT,
  "warmup_s": $WARMUP, "steady_s": round(steady, 2), "published": $published, "consumed": $final,
  "msgs_in_steady": msgs, "consumed_rate": round(msgs / steady, 1),
  "cpu_s": cpu_s, "cpu_pct": round(100 * cpu_s / steady, 1),
  "cpu_us_per_msg": round(cpu_s * 1e6 / msgs, 2) if msgs else None,
  "rss_kib_median": int(statistics.median(rss)) if rss else None, "rss_kib_max_sampled": max(rss) if rss else None,
  "vmhwm_kib": int("$hwm" or 0),
  "lag_s_start": round(lag0, 2), "lag_s_end": round(lag1, 2),
  "drained": "$drained" == "true", "drain_after_pub_end_s": round($t_drained - $t_pub_end, 2),
  "kept_up": "$drained" == "true" and lag1 - lag0 <= 1.0,
  "broker_cpu_pct": round(100 * ($bcpu1 - $bcpu0) / $CLK_TCK / steady, 1),
  "loadgen_cpu_pct": round(100 * ($lcpu1 - $lcpu0) / $CLK_TCK / steady, 1),
  "trial_dir": "$T",
}
open(sys.argv[1], "a").write(json.dumps(rec) + "\n")
line = (f"{rec['contestant']:>13} {rate:>7} rep {$rep}: kept_up={rec['kept_up']} cpu={rec['cpu_pct']}% "
      f"{rec['cpu_us_per_msg']} us/msg rss={rec['rss_kib_median']} KiB hwm={rec['vmhwm_kib']} KiB "
      f"lag {rec['lag_s_start']}->{rec['lag_s_end']} s load {rec['load_avg']}")
print(line, file=sys.stderr)
open("$OUT/run.log", "a").write(line + "\n")
PY
}

{
  echo "# compare.sh $(date -u +%FT%TZ) contestants=[$CONTESTANTS] rates=[$RATES] reps=$REPS warmup=$WARMUP steady=$STEADY devices=$DEVICES agent_outbox_max_bytes=${AGENT_OUTBOX_MAX:-default} agent_cache_bytes=${AGENT_CACHE:-default} agent_journal=[${AGENT_JOURNAL[*]}] broker_inflight=$BROKER_INFLIGHT MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-unset} workload=$KIND${LOG_FILE:+ log_file=$LOG_FILE}"
  echo "# $(nproc) cpus; $(uptime)"
} | tee -a "$OUT/run.log" >&2
for rep in $(seq "$REPS"); do
  for rate in $RATES; do
    for c in $CONTESTANTS; do
      trial "$c" "$rate" "$rep"
    done
  done
done
echo "results: $RESULTS" >&2
