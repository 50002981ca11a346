#!/usr/bin/env bash
# System calls per query of the DNS server under dnsperf's full load
# (the blocked workload of bench/dns/run.sh, 100 000 names, 5 s), counted
# by the kernel's tracepoints with `perf stat` (strace slows the server
# enough to change its batch sizes, and so the count).
#
#   bench/dns/syscalls.sh [off|log]     (default: events off)
#
# BENCH_SERVER_BIN picks another build of bench_server to count, as for
# callgrind.sh. Needs perf with tracepoint access.
set -euo pipefail
log=${1:-off}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
work=$(mktemp -d); pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; "$root/scripts/dns-upstream" stop "$work/upstream" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
python3 - 100000 "$work" <<'PY'
import random, sys
n, work = int(sys.argv[1]), sys.argv[2]
random.seed(42)
blocked = [f"site{i}.b{i % 997}.blocked.bench" for i in range(n)]
allowed = [f"ok{i}.allowed.bench" for i in range(5000)]
open(f"{work}/blocked.txt", "w").write("\n".join(blocked) + "\n")
with open(f"{work}/records", "w") as f:
    for i, name in enumerate(allowed): f.write(f"{name} A 192.0.2.{i % 250 + 1}\n")
with open(f"{work}/q-blocked", "w") as f:
    for _ in range(200000): f.write(f"{random.choice(blocked)} A\n")
with open(f"{work}/q-warm", "w") as f:
    for name in allowed: f.write(f"{name} A\n")
PY
upstream=$("$root/scripts/dns-upstream" start unbound "$work/upstream" "$work/records")
bench_policy "$work/policy.toml"
bin=$(bench_dns_server "$root")
"$bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1 "127.0.0.1:$upstream" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
extra=(); [ "$log" != off ] && extra=(--log "$work/events.sqlite")
"$bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" "127.0.0.1:$upstream" "${extra[@]}" 2>/dev/null &
pid=$!
for _ in $(seq 1 100); do dig +time=1 +tries=1 @127.0.0.1 -p "$port" site1.b1.blocked.bench A >/dev/null 2>&1 && break; sleep 0.1; done
dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-warm" -n 1 -c 8 -q 500 >/dev/null 2>&1 || true
perf stat -x, -e 'raw_syscalls:sys_enter,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex' -p "$pid" -o "$work/stat.txt" -- sleep 6 &
sp=$!
dnsperf -s 127.0.0.1 -p "$port" -d "$work/q-blocked" -l 5 -c 8 -q 500 > "$work/perf.txt" 2>&1 || true
wait $sp
q=$(awk '/Queries completed/ {print $3}' "$work/perf.txt")
echo "queries $q, queries/s $(awk '/Queries per second/ {print $4}' "$work/perf.txt")"
awk -F, -v q="$q" '/syscalls/ {printf "%-36s %10d  %.3f per query\n", $3, $1, $1/q}' "$work/stat.txt"
