#!/usr/bin/env bash
# Every benchmark behind docs/benchmarks.md's "final" subsections, one
# after another, for a quiet machine (about 35 minutes on 2 cores): the
# filtering engine's sizes, decisions and reloads (issue 3), monitoring
# (issue 6), then DNS (issue 4) and the proxy (issue 5) twice each.
# Results go to bench/out/all-HHMM/, one file per benchmark, each starting
# with the load average.
#
#   bench/all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
out=bench/out/all-$(date -u +%H%M)
mkdir -p "$out"
cargo build -q --release -p sheepdog-policy --example filter_bench -p sheepdog-monitor --example monitor_bench -p sheepdog-dns --example bench_server -p sheepdog-proxy --example bench_proxy
{ uptime; lscpu | grep "Model name"; date -u; } > "$out/machine.txt"
# Issue 3: sizes, compile, decisions, and reloads as serve does them.
{ uptime; bench/filtering/run.sh; } > "$out/filtering.txt" 2>&1
{ uptime; bench/monitor/run.sh; } > "$out/monitor.txt" 2>&1
for i in 1 2; do { uptime; bench/dns/run.sh 1000000 10; } > "$out/dns-$i.txt" 2>&1; done
for i in 1 2; do { uptime; bench/proxy/run.sh 1000000 10 32; } > "$out/proxy-$i.txt" 2>&1; done
echo "results in $out"
