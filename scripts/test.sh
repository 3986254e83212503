#!/usr/bin/env bash
# Runs the whole test suite. Installs what the end-to-end tests need (Mosquitto, libfaketime,
# the aarch64 cross gcc + libc, qemu-user, chromium + chromium-driver) when it is missing and
# this user may install packages; otherwise those tests print "SKIP: ..." (or fail, when
# EDGE_REQUIRE_SERVICES=1, as in CI). Builds every host binary and the aarch64 edge-agent
# (debug) before `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; }
have_faketime() { ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; }
aarch64=aarch64-unknown-linux-gnu
have_cross_gcc() { command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; }
have_arm64_libc() { [ -e /usr/aarch64-linux-gnu/lib/libc.so ] && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; }
have_qemu() { command -v qemu-aarch64 >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ]; }
have_chromedriver() { command -v chromedriver >/dev/null 2>&1; }
have_rust_aarch64() { [ -d "$(rustc --print target-libdir --target "$aarch64" 2>/dev/null)" ]; }

# Mosquitto for the end-to-end tests; libfaketime for the clock fault tests; the aarch64
# linker (.cargo/config.toml), its libc (also qemu's -L sysroot) and qemu-aarch64 for
# hil-tests/tests/qemu_aarch64.rs; headless Chromium and its WebDriver for
# hil-tests/tests/dashboard.rs.
missing=()
have_mosquitto || missing+=(mosquitto)
have_faketime || missing+=(faketime)
have_cross_gcc || missing+=(gcc-aarch64-linux-gnu)
have_arm64_libc || missing+=(libc6-dev-arm64-cross)
have_qemu || missing+=(qemu-user)
have_chromium || missing+=(chromium)
have_chromedriver || missing+=(chromium-driver)
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

# The rust standard library for aarch64 (rustup only; another toolchain must bring its own).
if ! have_rust_aarch64 && command -v rustup >/dev/null 2>&1; then
  echo "test.sh: rustup target add $aarch64 (needed by hil-tests/tests/qemu_aarch64.rs)"
  rustup target add "$aarch64" || echo "test.sh: rustup target add failed; the qemu test will skip" >&2
fi

# Build every binary first so the end-to-end tests find edge-agent and cloud-sink.
cargo build --workspace --bins --locked
# ... and the aarch64 edge-agent once (target/aarch64-unknown-linux-gnu/debug), which
# qemu_aarch64.rs runs under qemu-aarch64. A failing cross build fails the run.
if have_cross_gcc && have_rust_aarch64; then
  cargo build -p edge-agent --bin edge-agent --target "$aarch64" --locked
else
  echo "test.sh: no aarch64 cross toolchain here; the qemu test will skip" >&2
fi
exec cargo test --workspace --locked "$@"
