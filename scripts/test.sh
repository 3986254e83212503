#!/usr/bin/env bash
# Runs the whole test suite. Installs what the end-to-end tests need (Mosquitto)
# when it is missing and this user may install packages; otherwise those tests
# print "SKIP: ..." (or fail, when EDGE_REQUIRE_SERVICES=1, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }

if ! have_mosquitto; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing mosquitto (needed by the end-to-end tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  else
    echo "test.sh: mosquitto not found and cannot install it here; end-to-end tests will skip" >&2
  fi
fi

# Build every binary first so the end-to-end tests find edge-agent and cloud-sink.
cargo build --workspace --bins --locked
exec cargo test --workspace --locked "$@"
