# hil-tests/bench/lib.sh: helpers the bench scripts share (sourced, not run): --help text,
# free ports, polling, metrics, the sink and agent configs, and killing what a script started. It starts nothing itself.

# usage: the script's header comment (line 2 up to `set -euo`), without the leading `# `.
usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

# port: a free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for TIMEOUT_S CMD...: polls CMD every 50 ms until it succeeds; 1 if it never did.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || return 1
    sleep 0.05
  done
}

# Background processes to kill on exit: append their pids to PIDS.
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# metric PORT NAME: the sum of every sample of metric NAME (any labels) at 127.0.0.1:PORT/metrics.
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%.0f\n", s}'; }

# write_sink_config FILE PORT DATA_DIR: a cloud-sink config on 127.0.0.1:PORT with one gateway,
# gw-bench, whose token is "bench-token".
write_sink_config() {
  local hash; hash=$(printf bench-token | sha256sum | cut -d' ' -f1)
  printf 'listen = "127.0.0.1:%s"\ndata_dir = "%s/sink"\n[[gateways]]\nid = "gw-bench"\ntoken_sha256 = "%s"\n' \
    "$2" "$3" "$hash" > "$1"
}

# write_agent_config FILE DATA_DIR MQTT_PORT SINK_PORT METRICS_PORT: configs/demo.toml (of
# $ROOT) as gateway gw-bench with this run's broker, sink, data dir and metrics listener, model
# paths made absolute.
write_agent_config() {
  sed -e 's/^gateway_id = .*/gateway_id = "gw-bench"/' -e "s#^data_dir = .*#data_dir = \"$2\"#" \
      -e "s/^port = 1883/port = $3/" -e "s#^url = .*#url = \"http://127.0.0.1:$4\"#" \
      -e "s/^client_id = .*/client_id = \"bench-agent\"/" \
      -e "s/^# metrics_listen = .*/metrics_listen = \"127.0.0.1:$5\"/" \
      -e "s#^path = \"\.\./models/#path = \"$ROOT/models/#" \
      "$ROOT/configs/demo.toml" > "$1"
}
