#!/usr/bin/env bash
# Log search benchmark (issue 7): seeds COUNT synthetic decision events
# (default 10 million, about 5 GB and 20–40 minutes on 2 busy cores, most
# of it building the indexes) into a SQLite file, then times representative
# console searches. The file is kept, so a second run only queries.
#   bench/console/run.sh [DB_FILE] [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
db="${1:-bench/out/console/events.sqlite}"
count="${2:-10000000}"
rounds="${3:-20}"
cargo build --release --locked -p sheepdog-store --example search_bench
bench="$CARGO_TARGET_DIR/release/examples/search_bench"
mkdir -p "$(dirname "$db")"
if [ ! -e "$db" ]; then
  "$bench" seed-sql "sqlite://$db" "$count"
fi
"$bench" query "sqlite://$db" "$rounds"
