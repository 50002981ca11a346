#!/usr/bin/env bash
# DNS-over-TLS forwarding benchmark: sheepdog (examples/bench_server)
# forwarding every question to a local unbound over DNS over TLS, each
# question a different name so that none is answered from the cache.
# Measures the cost of the upstream path itself (docs/dns.md, "DNS over
# TLS: connection reuse"), and counts the TLS connections left open.
#
#   bench/dns/dot.sh [SECONDS]     (default 15 s)
#
# Every socket is on 127.0.0.1. Installs dnsperf, unbound and dig from
# Debian's packages if absent.
set -euo pipefail
seconds=${1:-15}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
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
need dnsperf dnsperf; need dig dnsutils; need unbound unbound
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# More names than dnsperf sends in the run, so none repeats.
python3 -c "
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(2000000): f.write(f'n{i}.miss.example.test A\n')
" "$work/queries"
cat >"$work/policy.toml" <<'POLICY'
fallback_group = "guest"
[school]
name = "Bench Primary"
time_zone = "Europe/London"
[[groups]]
name = "guest"
default = "allow"
POLICY

DNS_UPSTREAM_TLS=1 "$root/scripts/dns-upstream" start unbound "$work/upstream" >/dev/null
tls=$(cat "$work/upstream/tls.port")
(cd "$root" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target} cargo build -q --release -p sheepdog-dns --example bench_server)
server_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/bench_server
"$server_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:0 127.0.0.1:1 2>/dev/null
port=$(free_port)
BENCH_UPSTREAM_ROOTS="$work/upstream/tls-ca.pem" "$server_bin" "$work/policy.toml" \
  "$work/snapshot.sdsnap" "127.0.0.1:$port" "tls://127.0.0.1:$tls#dns.test" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do
  dig @127.0.0.1 -p "$port" +short +time=1 +tries=1 www.example.test A >/dev/null 2>&1 && break
  sleep 0.1
done
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$seconds" -c 8 -q 100 >"$work/perf.txt" 2>&1 || true
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second|Average Latency" "$work/perf.txt"
echo "TLS connections open to the upstream: $(ss -Htn state established "( dport = :$tls )" | wc -l)"
