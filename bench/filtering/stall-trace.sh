#!/usr/bin/env bash
# Where a decider's long waits during a reload come from (issue 3), from the
# guest kernel's own record: timer ticks, interrupts, softirqs and context
# switches on every CPU while `filter_bench reload LIST MODE` runs.
# Needs root, perf (Debian: linux-perf) and python3.
#   bench/filtering/stall-trace.sh [MODE] [RUNS]     (default: process 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mode="${1:-process}" runs="${2:-3}"
out=bench/out/filtering
list="$out/1m.txt"
[ -f "$list" ] || { echo "$list is missing: run bench/filtering/run.sh first" >&2; exit 1; }
cargo build --release -p sheepdog-policy --example filter_bench
bench="$CARGO_TARGET_DIR/release/examples/filter_bench"
events=sched:sched_switch,irq:softirq_entry,irq:softirq_exit,irq:irq_handler_entry,irq:irq_handler_exit
for v in local_timer call_function call_function_single reschedule; do
  events="$events,irq_vectors:${v}_entry"
  [ "$v" = reschedule ] || events="$events,irq_vectors:${v}_exit"
done
for run in $(seq "$runs"); do
  echo "== run $run, reload $mode, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
  perf record -q -a -e "$events" -o "$out/stall-$run.data" -- \
    "$bench" reload "$list" "$mode" | grep -E '^reload|slow decision'
  perf script -i "$out/stall-$run.data" -F comm,tid,cpu,time,event,trace 2>/dev/null > "$out/stall-$run.txt"
  python3 bench/filtering/stall_trace.py "$out/stall-$run.txt"
  rm -f "$out/stall-$run.data"
done
