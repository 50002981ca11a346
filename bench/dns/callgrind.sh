#!/usr/bin/env bash
# The DNS server's own cost per query, in instructions, under callgrind:
# deterministic, so it can be compared across commits on a busy machine
# where queries per second cannot.
#
#   bench/dns/callgrind.sh [NAMES] [QUERIES]   (defaults: 100000 names, 20000 queries)
#
# Runs crates/dns/examples/bench_server.rs (release) under valgrind's
# callgrind twice per configuration: once answering only the start-up
# probe, once also answering QUERIES queries from dnsperf at a low rate (so
# none is lost while valgrind runs the server slowly). The difference,
# divided by QUERIES, is the cost of one query. Configurations: events off
# and every query logged to SQLite, each on the blocked and the mixed
# workload of bench/dns/run.sh. The event writer's work counts too: it
# runs in the same process. CALLGRIND_EVENTS picks configurations among
# "off", "on" (events written to the database as they come, the writer
# keeping up) and "spool" (every event to the spool, as when the writer
# has fallen behind: the database is closed once open).
set -euo pipefail
names=${1:-100000}
queries=${2:-20000}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  "$root/scripts/dns-upstream" stop "$work/upstream" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq valgrind; }
command -v dnsperf >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq dnsperf; }
command -v dig >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq dnsutils; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

python3 - "$names" "$queries" "$work" <<'PY'
import random, sys
n, q, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(42)
blocked = [f"site{i}.b{i % 997}.blocked.bench" for i in range(n)]
allowed = [f"ok{i}.allowed.bench" for i in range(5000)]
open(f"{work}/blocked.txt", "w").write("\n".join(blocked) + "\n")
with open(f"{work}/records", "w") as f:
    for i, name in enumerate(allowed):
        f.write(f"{name} A 192.0.2.{i % 250 + 1}\n")
with open(f"{work}/q-blocked", "w") as f:
    for _ in range(q):
        f.write(f"{random.choice(blocked)} A\n")
with open(f"{work}/q-mixed", "w") as f:
    for _ in range(q):
        f.write(f"{random.choice(blocked) if random.random() < 0.5 else random.choice(allowed)} A\n")
# Every allowed name once, to fill the cache before counting.
with open(f"{work}/q-warm", "w") as f:
    for name in allowed:
        f.write(f"{name} A\n")
PY
upstream=$("$root/scripts/dns-upstream" start unbound "$work/upstream" "$work/records")
bench_policy "$work/policy.toml"
server_bin=$(bench_dns_server "$root")
"$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1 "127.0.0.1:$upstream"

# instructions LOG MIX: total instructions of one run; MIX "none" sends
# only the probe (and the warm-up).
instructions() {
  local log=$1 mix=$2 port
  port=$(free_port)
  rm -f "$work/events.sqlite"* && rm -rf "$work/events.spool"
  local extra=()
  [ "$log" != off ] && extra=(--log "$work/events.sqlite")
  if [ "$log" = spool ]; then export BENCH_LOG_SPOOL_ONLY=1; else unset BENCH_LOG_SPOOL_ONLY; fi
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" "127.0.0.1:$upstream" "${extra[@]}" \
    2>"$work/valgrind.log" &
  pid=$!
  for _ in $(seq 1 600); do
    dig +time=1 +tries=1 @127.0.0.1 -p "$port" site1.b1.blocked.bench A >/dev/null 2>&1 && break
    sleep 0.1
  done
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-warm" -n 1 -c 1 -q 20 -Q 1000 >/dev/null 2>&1 || true
  if [ "$mix" != none ]; then
    dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-$mix" -n 1 -c 1 -q 20 -Q 1000 >"$work/perf.txt" 2>&1 || true
    local lost
    lost=$(awk '/Queries lost/ { print $3 }' "$work/perf.txt")
    [ "$lost" = 0 ] || echo "warning: $lost queries lost in $log/$mix" >&2
  fi
  # Let the writer flush, then stop the server cleanly.
  sleep 2
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  # CALLGRIND_KEEP=DIR keeps each profile, for callgrind_annotate.
  [ -n "${CALLGRIND_KEEP:-}" ] && cp "$work/cg.out" "$CALLGRIND_KEEP/callgrind.$log-$mix.out"
  awk '/^summary:/ { print $2 }' "$work/cg.out"
}

echo "| events | workload | instructions per query |"
echo "|---|---|---|"
for log in ${CALLGRIND_EVENTS:-off on}; do
  base=$(instructions "$log" none)
  for mix in blocked mixed; do
    total=$(instructions "$log" "$mix")
    echo "| $log | $mix | $(( (total - base) / queries )) |"
  done
done
