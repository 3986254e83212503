#!/usr/bin/env bash
# Runs the whole test suite. Installs what the end-to-end tests need (Mosquitto, libfaketime)
# when it is missing and this user may install packages; otherwise those tests
# print "SKIP: ..." (or fail, when EDGE_REQUIRE_SERVICES=1, as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }
have_faketime() { ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; }

# Mosquitto for the end-to-end tests; libfaketime for the clock fault tests.
missing=()
have_mosquitto || missing+=(mosquitto)
have_faketime || missing+=(faketime)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]} (needed by the end-to-end and fault tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: ${missing[*]} not found and cannot install here; tests needing them will skip" >&2
  fi
fi

# cargo-deb for the packaging test (crates.io only; pinned: newer releases may refuse the dev
# profile the test packages to avoid a second, release build).
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "test.sh: installing cargo-deb 3.8.0 (needed by hil-tests/tests/packaging.rs)"
  cargo install cargo-deb --version 3.8.0 --locked --quiet || echo "test.sh: cargo-deb install failed; the packaging test will skip" >&2
fi

# Build every binary first so the end-to-end tests find edge-agent and cloud-sink.
cargo build --workspace --bins --locked
exec cargo test --workspace --locked "$@"
