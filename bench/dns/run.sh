#!/usr/bin/env bash
# DNS benchmark: sheepdog against unbound (local-zone) and dnsmasq
# (address=), each filtering the same generated list in front of the same
# local upstream, all on loopback, measured with dnsperf.
#
#   bench/dns/run.sh [NAMES] [SECONDS]     (defaults: 1000000 names, 10 s)
#   BENCH_PIN=1 bench/dns/run.sh ...        (server under test on CPU 0, dnsperf on CPU 1)
#
# Unpinned, dnsperf and the server share every core, so a server's rate
# depends on how the scheduler splits them, which moves from run to run.
# BENCH_PIN=1 gives each server, all three alike, the first core alone
# (sheepdog then runs one worker thread and one socket, unbound one
# thread; dnsmasq has one anyway) and dnsperf the second: fairer, and
# steadier, on a two-core machine.
#
# Each workload row also gives the server's CPU time per answered query
# (user + system, every thread, from /proc) and so its rate per core of
# its own: on two cores dnsperf takes much of the CPU, so the rate itself
# is capped by the client as much as by the server. For the logged row,
# that CPU excludes the backlog written after the load stops.
#
# Prints a Markdown table for docs/benchmarks.md. Installs dnsperf, unbound,
# dnsmasq and dig from Debian's packages if absent. Every socket is on
# 127.0.0.1. Blocked names get NXDOMAIN from all three servers, so the
# answers compared are the same.
set -euo pipefail
names=${1:-1000000}
seconds=${2:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$root/scripts/dns-upstream" stop "$work/upstream" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need() { # program package
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$2"
  }
}
need dnsperf dnsperf; need dig dnsutils; need unbound unbound; need dnsmasq dnsmasq-base
# spooled_events DIR: events waiting in the spool, binary frames (past the
# replay's noted progress) and JSON lines alike.
spooled_events() {
  python3 - "$1" <<'PY'
import os, struct, sys
d, n = sys.argv[1], 0
for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    path = os.path.join(d, name)
    if name.endswith(".jsonl"):
        n += sum(1 for line in open(path, "rb") if line.strip())
    elif name.endswith(".bin"):
        offset = 0
        if os.path.exists(path + ".at"):
            offset = int(open(path + ".at").read().strip() or 0)
        with open(path, "rb") as f:
            f.seek(offset)
            while True:
                head = f.read(16)
                if len(head) < 16 or head[:4] != b"SDE1":
                    break
                size, count, _ = struct.unpack("<III", head[4:])
                if len(f.read(size)) < size:
                    break
                n += count
print(n)
PY
}
if [ "${BENCH_PIN:-0}" = 1 ]; then
  on_server=(taskset -c 0); on_client=(taskset -c 1); unbound_threads=1
else
  on_server=(); on_client=(); unbound_threads=2
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "generating $names blocked names and the query mixes" >&2
python3 - "$names" "$work" <<'PY'
import random, sys
n, work = int(sys.argv[1]), sys.argv[2]
random.seed(42)
blocked = [f"site{i}.b{i % 997}.blocked.bench" for i in range(n)]
allowed = [f"ok{i}.allowed.bench" for i in range(5000)]
with open(f"{work}/blocked.txt", "w") as f:
    f.write("\n".join(blocked) + "\n")
with open(f"{work}/records", "w") as f:
    for i, name in enumerate(allowed):
        f.write(f"{name} A 192.0.2.{i % 250 + 1}\n")
with open(f"{work}/q-blocked", "w") as f:
    for _ in range(200000):
        f.write(f"{random.choice(blocked)} A\n")
with open(f"{work}/q-mixed", "w") as f:
    for _ in range(200000):
        f.write(f"{random.choice(blocked) if random.random() < 0.5 else random.choice(allowed)} A\n")
with open(f"{work}/unbound-zones", "w") as f:
    for name in blocked:
        f.write(f'  local-zone: "{name}." always_nxdomain\n')
with open(f"{work}/dnsmasq-addresses", "w") as f:
    for name in blocked:
        f.write(f"address=/{name}/\n")
PY

upstream=$("$root/scripts/dns-upstream" start unbound "$work/upstream" "$work/records")
echo "upstream (unbound, local data only) on 127.0.0.1:$upstream" >&2

# sheepdog: build the snapshot once (not timed as start-up: a deployment
# keeps the last snapshot on disk), then start from it.
bench_policy "$work/policy.toml"
server_bin=$(bench_dns_server "$root")
"$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1 "127.0.0.1:$upstream"

first_answer() { # port start_ns
  local port=$1 start=$2
  for _ in $(seq 1 6000); do
    if dig +time=1 +tries=1 @127.0.0.1 -p "$port" site1.b1.blocked.bench A >/dev/null 2>&1; then
      echo $(( ($(date +%s%N) - start) / 1000000 ))
      return
    fi
    sleep 0.01
  done
  echo "never"
}

# CPU time a process has used (user + system, all its threads), in clock
# ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() { # label port pid mix
  local label=$1 port=$2 pid=$3 mix=$4
  local ticks_before; ticks_before=$(cpu_ticks "$pid")
  "${on_client[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-$mix" -l "$seconds" -c 8 -q 500 -v >"$work/perf.txt" 2>&1 || true
  local ticks=$(( $(cpu_ticks "$pid") - ticks_before ))
  local completed; completed=$(awk '/Queries completed/ { print $3; exit }' "$work/perf.txt")
  answered=$(( answered + completed ))
  local qps avg p99
  qps=$(awk '/Queries per second/ { printf "%.0f", $4 }' "$work/perf.txt")
  avg=$(awk '/Average Latency/ { printf "%.3f", $4 * 1000 }' "$work/perf.txt")
  p99=$(awk '/^> / { print $NF }' "$work/perf.txt" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] * 1000 }')
  # The server's CPU per answered query, and what that makes one core of
  # it worth: dnsperf shares the two cores, so the rate above is capped
  # by the client as much as by the server.
  local per_query per_core
  per_query=$(awk -v t="$ticks" -v hz="$hz" -v n="$completed" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "?" }')
  per_core=$(awk -v t="$ticks" -v hz="$hz" -v n="$completed" 'BEGIN { if (t > 0) printf "%.0f", n * hz / t; else print "?" }')
  echo "| $label | $mix | $qps | $avg | $p99 | $(( $(rss_kb "$pid") / 1024 )) | $per_query | $per_core |"
}
hz=$(getconf CLK_TCK)

run_server() { # label port pid start_ns
  local label=$1 port=$2 pid=$3 start=$4
  local first
  first=$(first_answer "$port" "$start")
  echo "$label: first answer after $first ms" >&2
  echo "| $label | first answer | $first ms | | | $(( $(rss_kb "$pid") / 1024 )) | | |"
  # Warm the caches with one pass of the mixed file.
  answered=1
  "${on_client[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-mixed" -n 1 -c 8 -q 500 >"$work/warm.txt" 2>&1 || true
  answered=$(( answered + $(awk '/Queries completed/ { print $3; exit }' "$work/warm.txt") ))
  measure "$label" "$port" "$pid" blocked
  measure "$label" "$port" "$pid" mixed
}

echo "| server | workload | queries/s | avg ms | p99 ms | RSS MiB | server CPU µs/query | queries/s per server core |"
echo "|---|---|---|---|---|---|---|---|"

port=$(free_port); start=$(date +%s%N)
"${on_server[@]}" "$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" "127.0.0.1:$upstream" 2>"$work/sheepdog.log" &
pid=$!; pids+=("$pid")
run_server "sheepdog (events off)" "$port" "$pid" "$start"
kill -INT "$pid"; wait "$pid" 2>/dev/null || true

port=$(free_port); start=$(date +%s%N)
"${on_server[@]}" "$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" "127.0.0.1:$upstream" --log "$work/events.sqlite" 2>"$work/sheepdog-log.log" &
pid=$!; pids+=("$pid")
run_server "sheepdog (every query logged)" "$port" "$pid" "$start"
# A writer that falls behind puts the backlog in the spool and replays it
# once the load stops: wait for that, and time it.
drain_start=$(date +%s%N)
drained=never
for _ in $(seq 1 1800); do
  if [ "$(spooled_events "$work/events.spool")" = 0 ]; then
    drained=$(( ($(date +%s%N) - drain_start) / 1000000 ))
    break
  fi
  sleep 0.5
done
echo "sheepdog (every query logged): the spool was empty $drained ms after the load stopped" >&2
kill -INT "$pid"; wait "$pid" 2>/dev/null || true
# The writer's own count, printed by bench_server as it stops: `refused` is
# events the full channel turned away before the writer saw them.
grep "event writer:" "$work/sheepdog-log.log" >&2 || true
# Whether every answered query did become a stored event: events the
# writer loses (channel full, spool full) are counted, never waited for,
# and would flatter the logged figures.
stored=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM decision_events").fetchone()[0])' "$work/events.sqlite")
spooled=$(spooled_events "$work/events.spool")
echo "sheepdog (every query logged): $stored events stored and $spooled spooled for $answered queries answered (first-answer probes included)" >&2
echo "| sheepdog (every query logged) | events stored + spooled / answered | $stored + $spooled / $answered | | | | | |"
echo "| sheepdog (every query logged) | backlog in the database after the load stopped | $drained ms | | | | | |"

port=$(free_port)
{
  echo "server:"
  echo "  interface: 127.0.0.1"
  echo "  port: $port"
  echo "  do-ip6: no"
  echo "  do-daemonize: no"
  echo "  username: \"\""
  echo "  chroot: \"\""
  echo "  use-syslog: no"
  echo "  num-threads: $unbound_threads"
  echo "  do-not-query-localhost: no"
  echo "  module-config: \"iterator\""
  echo "  access-control: 127.0.0.0/8 allow"
  cat "$work/unbound-zones"
  echo "forward-zone:"
  echo "  name: \".\""
  echo "  forward-addr: 127.0.0.1@$upstream"
  echo "remote-control:"
  echo "  control-enable: no"
} >"$work/unbound.conf"
start=$(date +%s%N)
unbound_bin=$(command -v unbound || echo /usr/sbin/unbound)
"${on_server[@]}" "$unbound_bin" -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
pid=$!; pids+=("$pid")
run_server "unbound 1.17 (local-zone)" "$port" "$pid" "$start"
kill "$pid"; wait "$pid" 2>/dev/null || true

port=$(free_port)
{
  echo "port=$port"
  echo "listen-address=127.0.0.1"
  echo "bind-interfaces"
  echo "no-resolv"
  echo "no-hosts"
  echo "cache-size=10000"
  echo "server=127.0.0.1#$upstream"
  cat "$work/dnsmasq-addresses"
} >"$work/dnsmasq.conf"
start=$(date +%s%N)
dnsmasq_bin=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
"${on_server[@]}" "$dnsmasq_bin" --keep-in-foreground --conf-file="$work/dnsmasq.conf" --pid-file="$work/dnsmasq.pid" --user=root >"$work/dnsmasq.log" 2>&1 &
pid=$!; pids+=("$pid")
run_server "dnsmasq 2.90 (address=)" "$port" "$pid" "$start"
kill "$pid"; wait "$pid" 2>/dev/null || true
