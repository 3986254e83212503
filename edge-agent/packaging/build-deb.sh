#!/usr/bin/env bash
# Builds the edge-agent .deb with cargo-deb (`cargo install cargo-deb --locked`).
#
#   edge-agent/packaging/build-deb.sh                 # release build, this machine's arch
#   edge-agent/packaging/build-deb.sh --target aarch64-unknown-linux-gnu   # Pi 4/5, Jetson
#   PROFILE=gateway edge-agent/packaging/build-deb.sh --target aarch64-unknown-linux-gnu
#   PROFILE=dev edge-agent/packaging/build-deb.sh --no-build   # package target/debug (tests)
#
# PROFILE=gateway packages the size-optimized build of build-gateway.sh (set RELR=0 for glibc <
# 2.36; its costs in BENCHMARKS.md, "ARM builds"); other profiles are built by cargo-deb itself.
# The packaged config is configs/gateway.example.toml with the paths a package has: models under
# /usr/share/edge-agent/models, the sink token as the systemd credential the unit loads. Extra
# arguments go to `cargo deb`. Prints the path of the .deb last.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v cargo-deb >/dev/null || {
  echo "build-deb.sh: cargo-deb not found; install it with: cargo install cargo-deb --locked" >&2
  exit 2
}
out="$root/target/packaging"
mkdir -p "$out"
sed -e 's|"\.\./models/|"/usr/share/edge-agent/models/|' \
    -e 's|^token_file = .*|token_file = "/run/credentials/edge-agent.service/token"|' \
    -e 's|^# Check it with:  edge-agent check-config configs/gateway.example.toml|# Check it with:  edge-agent check-config /etc/edge-agent/agent.toml|' \
    configs/gateway.example.toml > "$out/agent.toml.$$"
mv "$out/agent.toml.$$" "$out/agent.toml"  # atomic: two packagings may run at once
grep -q '/usr/share/edge-agent/models/' "$out/agent.toml" || {
  echo "build-deb.sh: the example config no longer names ../models/ paths; update this script" >&2
  exit 1
}
profile="${PROFILE:-release}"
if [ "$profile" = gateway ] && [[ " $* " != *" --no-build "* ]]; then
  gateway_args=()
  prev=""
  for arg in "$@"; do
    case "$arg" in --target=*) gateway_args+=("$arg") ;; esac
    [ "$prev" = --target ] && gateway_args+=(--target "$arg")
    prev="$arg"
  done
  # build-gateway.sh always names a target (target/<triple>/gateway/); cargo-deb must look there.
  if [ ${#gateway_args[@]} -eq 0 ]; then
    host="$(rustc -vV | sed -n 's/^host: //p')"
    gateway_args+=(--target "$host")
    set -- "$@" --target "$host"
  fi
  [ "${RELR:-1}" = 0 ] && gateway_args+=(--no-relr)
  "$root/edge-agent/packaging/build-gateway.sh" ${gateway_args[@]+"${gateway_args[@]}"} >/dev/null
  set -- "$@" --no-build
fi
# cargo-deb prints the package's path last on stdout.
deb="$(cargo deb -p edge-agent --profile "$profile" --output "$out/" "$@" | tail -1)"
[ -f "$deb" ] || { echo "build-deb.sh: cargo deb did not name a package (got: $deb)" >&2; exit 1; }
echo "$deb"
