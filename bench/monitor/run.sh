#!/usr/bin/env bash
# Monitoring benchmark (issue 6): normalise-and-match throughput on one
# core with every shipped library loaded. About 30 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -p sheepdog-monitor --example monitor_bench
taskset -c 0 "$CARGO_TARGET_DIR/release/examples/monitor_bench"
