#!/usr/bin/env bash
# Cache benchmark for BENCHMARKS.md ("Cache and rebuilds"): cold, warm no-change and
# one-input rebuilds of the test profile, 3 runs each; prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/clawimg
W=${BENCH_DIR:-/tmp/clawimg-bench}
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
for i in 1 2 3; do
  rm -rf "$W/c$i" "$W/o$i"
  echo "cold $i $(t $BIN -q build test --cache-dir "$W/c$i" --out "$W/o$i") load $(cut -d' ' -f1 /proc/loadavg)"
done
for i in 1 2 3; do
  echo "warm $i $(t $BIN -q build test --cache-dir "$W/c1" --out "$W/o1") load $(cut -d' ' -f1 /proc/loadavg)"
done
for i in 1 2 3; do
  echo "one-input $i $(t $BIN -q build test --cache-dir "$W/c1" --out "$W/o1" --var bench_run=$i) load $(cut -d' ' -f1 /proc/loadavg)"
done
