#!/usr/bin/env bash
# Filtering benchmarks (issue 3). Generates synthetic lists of 1M and 5M
# names under bench/out/, then measures compile time and memory, snapshot
# load memory, decision latency (5M names, 20 groups) and decision latency
# during reloads of a 1M list. Short: about a minute on an idle 2-core
# machine (much longer when other builds compete for the CPU; note `uptime`).
# Snapshots are format 04 (hashed table of name fingerprints); older .snap files under
# bench/out are rewritten by the compile steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/out/filtering
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p sheepdog-policy --example filter_bench
BIN="$CARGO_TARGET_DIR/release/examples/filter_bench"
[ -f "$OUT/1m.txt" ] || "$BIN" gen 1000000 "$OUT/1m.txt"
[ -f "$OUT/5m.txt" ] || "$BIN" gen 5000000 "$OUT/5m.txt"
uptime
echo "== 1M"; "$BIN" compile "$OUT/1m.txt" "$OUT/1m.snap"; "$BIN" load "$OUT/1m.snap"; "$BIN" load "$OUT/1m.snap" resident
echo "== 5M"; "$BIN" compile "$OUT/5m.txt" "$OUT/5m.snap"; "$BIN" load "$OUT/5m.snap"; "$BIN" load "$OUT/5m.snap" resident
echo "== decisions against 5M (one core; mapped file, then resident copy)"
for mode in mapped resident; do
    for run in 1 2 3; do taskset -c 0 "$BIN" decide "$OUT/5m.snap" "$OUT/5m.txt" "$mode"; done
done
echo "== reload 1M while deciding, as serve does it: rebuilt in a child process at nice 19, mapped and swapped (verdict, three times; then decide)"
uptime
for run in 1 2 3; do "$BIN" reload "$OUT/1m.txt" process; done
"$BIN" reload "$OUT/1m.txt" process decide
echo "== for comparison: rebuilt on a thread of the deciding process (nice 0, nice 19); the decider alone; beside a thread, then a process, filling and freeing 70 MB"
"$BIN" reload "$OUT/1m.txt"; "$BIN" reload "$OUT/1m.txt" nice
"$BIN" reload "$OUT/1m.txt" without
"$BIN" reload "$OUT/1m.txt" churn; "$BIN" reload "$OUT/1m.txt" churnproc
uptime
