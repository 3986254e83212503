# hil-tests/bench/lib.sh: helpers the bench scripts share (sourced, not run): --help text,
# free ports, polling, and killing what a script started. It starts nothing itself.

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
