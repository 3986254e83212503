#!/usr/bin/env bash
# Builds the smallest edge-agent binary, for gateways short of flash (SD cards, eMMC). It costs
# CPU and has a resident-memory peak the release build lacks (BENCHMARKS.md, "ARM builds"), so
# it is opt-in. Not for benchmarks of the x86 host (those use the `bench` profile).
#
#   edge-agent/packaging/build-gateway.sh --target aarch64-unknown-linux-gnu   # Pi 4/5, Jetson
#   edge-agent/packaging/build-gateway.sh --target armv7-unknown-linux-gnueabihf  # Pi 3, Zero 2
#   edge-agent/packaging/build-gateway.sh                 # this machine's own architecture
#   edge-agent/packaging/build-gateway.sh --no-relr ...   # for glibc < 2.36 (Ubuntu 22.04 Jetson Linux)
#   edge-agent/packaging/build-gateway.sh --no-lld ...    # link with the default (GNU) linker
#
# What makes it small (sizes measured in BENCHMARKS.md, "ARM builds"):
# - the `gateway` cargo profile (Cargo.toml): the release profile (fat LTO, one codegen unit,
#   panic = "abort", symbols stripped) at opt-level "z", sled at 3 (at "z" it kept ~20 MiB more
#   resident);
# - when an LLVM linker 15 or newer is installed (Debian 12: `apt-get install lld-16`; Debian 13:
#   `lld`): packed relative relocations (`-z pack-relative-relocs`, DT_RELR, which needs glibc
#   2.36 on the gateway: Debian 12, Raspberry Pi OS bookworm), 1.1 MB less than GNU ld's
#   unpacked ones (Debian 12's GNU ld 2.40 takes the option but does not pack them on aarch64).
# Other arguments go to `cargo build`. Prints the binary's path last, on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

target="" relr=1 use_lld=1 cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    --no-relr) relr=0; shift ;;
    --no-lld) use_lld=0; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) cargo_args+=("$1"); shift ;;
  esac
done
# Always name the target: the flags below then reach only the agent's own code, never build
# scripts or proc-macros, and the binary lands in target/<triple>/gateway/.
[ -n "$target" ] || target="$(rustc -vV | sed -n 's/^host: //p')"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# The newest ld.lld >= 15 on this machine (Debian installs versioned ones under /usr/lib/llvm-N).
find_lld() {
  local best="" best_major=0 candidate major
  for candidate in "$(command -v ld.lld || true)" /usr/lib/llvm-*/bin/ld.lld; do
    [ -x "$candidate" ] || continue
    major="$("$candidate" --version 2>/dev/null | sed -n 's/.*LLD \([0-9][0-9]*\)\..*/\1/p' | head -1)"
    if [ -n "$major" ] && [ "$major" -ge 15 ] && [ "$major" -gt "$best_major" ]; then
      best="$candidate" best_major="$major"
    fi
  done
  [ -n "$best" ] && echo "$best"
}

flags=""
if [ "$use_lld" = 1 ] && lld="$(find_lld)"; then
  # gcc's -fuse-ld=lld runs the `ld.lld` it finds first in its -B directories.
  linker_dir="$target_dir/gateway-linker"
  mkdir -p "$linker_dir"
  ln -sfn "$lld" "$linker_dir/ld.lld"
  flags="-C link-arg=-B$linker_dir -C link-arg=-fuse-ld=lld"
  [ "$relr" = 1 ] && flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"
  echo "build-gateway.sh: linking with $lld" >&2
elif [ "$use_lld" = 1 ]; then
  echo "build-gateway.sh: no ld.lld >= 15 found (Debian 12: apt-get install lld-16); linking with" \
    "the default linker, so a larger binary" >&2
fi

# CARGO_TARGET_<TRIPLE>_RUSTFLAGS: the triple upper-cased, '-' and '.' as '_'.
var="CARGO_TARGET_$(echo "$target" | tr 'a-z.-' 'A-Z__')_RUSTFLAGS"
export "$var=${!var:-} $flags"
echo "build-gateway.sh: $var=${!var}" >&2
cargo build --locked --profile gateway -p edge-agent --bin edge-agent --target "$target" \
  ${cargo_args[@]+"${cargo_args[@]}"} >&2

bin="$target_dir/$target/gateway/edge-agent"
[ -f "$bin" ] || { echo "build-gateway.sh: $bin missing after the build" >&2; exit 1; }
echo "build-gateway.sh: $(stat -c %s "$bin") bytes" >&2
echo "$bin"
