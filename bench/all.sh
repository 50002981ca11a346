#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md's "final" subsections, one
# after another, for a quiet machine (about 35 minutes on 2 cores):
# decisions and reloads (issue 3), monitoring (issue 6), then DNS (issue 4)
# and the proxy (issue 5) twice each. Results go to bench/out/all-HHMM/,
# one file per benchmark, each starting with the load average.
#
#   bench/all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
out=bench/out/all-$(date -u +%H%M)
mkdir -p "$out"
cargo build -q --release -p sheepdog-policy --example filter_bench -p sheepdog-monitor --example monitor_bench -p sheepdog-dns --example bench_server
B=$CARGO_TARGET_DIR/release/examples/filter_bench; O=bench/out/filtering
mkdir -p "$O"
[ -f "$O/1m.txt" ] || "$B" gen 1000000 "$O/1m.txt"
[ -f "$O/5m.txt" ] || "$B" gen 5000000 "$O/5m.txt"
[ -f "$O/5m.snap" ] || "$B" compile "$O/5m.txt" "$O/5m.snap"
{ uptime; lscpu | grep "Model name"; date -u; } > "$out/machine.txt"
{ uptime; for m in mapped resident; do taskset -c 0 "$B" decide "$O/5m.snap" "$O/5m.txt" "$m"; done; } > "$out/decide.txt" 2>&1
{ for _ in 1 2 3; do uptime; "$B" reload "$O/1m.txt" nice; done; "$B" reload "$O/1m.txt"; "$B" reload "$O/1m.txt" without; } > "$out/reload.txt" 2>&1
{ uptime; bench/monitor/run.sh; } > "$out/monitor.txt" 2>&1
for i in 1 2; do { uptime; bench/dns/run.sh 1000000 10; } > "$out/dns-$i.txt" 2>&1; done
for i in 1 2; do { uptime; bench/proxy/run.sh 1000000 10 32; } > "$out/proxy-$i.txt" 2>&1; done
echo "results in $out"
