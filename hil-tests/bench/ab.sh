#!/usr/bin/env bash
# Interleaved A/B of two agent builds at one offered rate: for each round, one compare.sh trial
# (agent only) with BIN_DIR=A, then one with BIN_DIR=B, so drift of the machine hits both alike.
# Usage: hil-tests/bench/ab.sh BIN_DIR_A BIN_DIR_B [rounds=2] [rate=10000] [out=/tmp/ab]
# Each BIN_DIR needs edge-agent, cloud-sink and load-gen (bench profile; see compare.sh).
# Prints each trial's summary line; the trials stay under OUT/<a|b>-<round>/. Not part of CI.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,6p' "$0"; exit 2; }
A=$1 B=$2 ROUNDS=${3:-2} RATE=${4:-10000} OUT=${5:-/tmp/ab}
cd "$(dirname "$0")/../.."
for round in $(seq 1 "$ROUNDS"); do
  for side in a b; do
    dir=$A; [[ $side == b ]] && dir=$B
    BIN_DIR=$dir hil-tests/bench/compare.sh --contestants agent --rates "$RATE" --reps 1 \
      --warmup 10 --steady 20 --out "$OUT/$side-$round" > "$OUT-$side-$round.log" 2>&1
    grep "rep 1" "$OUT-$side-$round.log" | sed "s|^|$side ($dir) round $round: |"
  done
done
