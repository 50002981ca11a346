#!/usr/bin/env bash
# Proxy benchmark: sheepdog against squid + squidGuard, each filtering the
# same generated list of blocked names (the one bench/dns/run.sh uses) in
# front of the same local nginx origin, all on 127.0.0.1, driven by wrk.
#
#   bench/proxy/run.sh [NAMES] [SECONDS] [CONNECTIONS]
#                                   (defaults: 1000000 names, 10 s, 32)
#
# Measures, for each proxy and for nginx directly:
#   - allowed plain-HTTP requests per second over keep-alive connections,
#     with events off, and logged with pages read for monitoring as
#     `serve` does (bench_proxy --log);
#     (wrk sends absolute-form requests to the proxy, as a browser does);
#   - p50/p99 latency, and the p99 added over going to nginx directly;
#   - blocked requests per second (sheepdog's block page, squidGuard's
#     redirect);
#   - a 1 GiB download through a CONNECT tunnel against the same download
#     direct (curl --proxytunnel), median of DOWNLOADS (default 5) each,
#     the two taken in turns; then again with curl on a core of its own
#     and the servers on the others.
# Prints a Markdown table for docs/benchmarks.md. Installs wrk, squid,
# squidguard, nginx and curl from Debian's packages if absent.
set -euo pipefail
names=${1:-1000000}
seconds=${2:-10}
connections=${3:-32}
# Downloads per side for the tunnel comparison (odd, for a median).
downloads=${DOWNLOADS:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
. "$root/bench/common/servers.sh"
bench_work

need() { # program package
  command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$2"
  }
}
need wrk wrk; need squid squid; need squidGuard squidguard; need nginx nginx-light; need curl curl
rss_kb() { awk '/VmRSS/ { s += $2 } END { print s }' "$@"; }

echo "generating $names blocked names" >&2
python3 - "$names" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/blocked.txt", "w") as f:
    for i in range(n):
        f.write(f"site{i}.b{i % 997}.blocked.bench\n")
PY

bench_origin

cat >"$work/allowed.lua" <<LUA
wrk.path = "http://127.0.0.1:$origin/index.html"
wrk.headers["Host"] = "127.0.0.1:$origin"
LUA
cat >"$work/blocked.lua" <<LUA
wrk.path = "http://site4242.b254.blocked.bench/index.html"
wrk.headers["Host"] = "site4242.b254.blocked.bench"
LUA

# wrk against PORT with SCRIPT: "requests/s p50_ms p99_ms"
drive() { # port script
  local out
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$2" "http://127.0.0.1:$1/" 2>&1)
  echo "$out" >>"$work/wrk.log"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
  ms() { awk -v k="$1" '$1 == k { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.3f", v }' <<<"$out"; }
  p50=$(ms "50%"); p99=$(ms "99%")
  echo "$rps $p50 $p99"
}

# One 1 GiB download in MiB/s, direct or through a proxy tunnel; on
# CPU $CLIENT_CPU when that is set.
fetch() { # [proxy_port]
  local run=(); [ -n "${CLIENT_CPU:-}" ] && run=(taskset -c "$CLIENT_CPU")
  if [ -n "${1:-}" ]; then
    "${run[@]}" curl -s -o /dev/null -w '%{speed_download}' --proxytunnel -x "http://127.0.0.1:$1" "http://127.0.0.1:$origin/big"
  else
    "${run[@]}" curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$origin/big"
  fi
}
median_mibs() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p" | awk '{ printf "%.0f", $1 / 1048576 }'; }

# Medians of DOWNLOADS downloads direct alone (nginx's row).
download() {
  local speeds=()
  for _ in $(seq 1 "$downloads"); do speeds+=("$(fetch)"); done
  median_mibs "${speeds[@]}"
}

# "tunnel direct": medians of DOWNLOADS downloads through the proxy's
# tunnel and as many direct, taken in turns (the direct one first in odd
# rounds, second in even ones), so both sides see the same machine: the
# direct rate moved by a third between runs minutes apart on the shared VM.
download_pair() { # proxy_port
  local tunnel=() direct=() round
  for round in $(seq 1 "$downloads"); do
    if (( round % 2 )); then
      direct+=("$(fetch)"); tunnel+=("$(fetch "$1")")
    else
      tunnel+=("$(fetch "$1")"); direct+=("$(fetch)")
    fi
  done
  echo "$(median_mibs "${tunnel[@]}") $(median_mibs "${direct[@]}")"
}

# The same pair with the client on a core of its own: curl on the last
# CPU, nginx and the proxy (every thread of each PID given) on the others.
# A pupil's device is another machine, so this is the layout closer to a
# school's; on a quiet two-core machine it measured within the run-to-run
# spread of the shared one (docs/benchmarks.md, issue 5, session 10).
download_pair_apart() { # proxy_port server_pids...
  local port=$1; shift
  local last=$(( $(nproc) - 1 )) servers=0 pair
  (( last > 0 )) && servers="0-$(( last - 1 ))"
  local p; for p in "$@" $(nginx_pids); do taskset -a -p -c "$servers" "$p" >/dev/null; done
  pair=$(CLIENT_CPU=$last download_pair "$port")
  for p in "$@" $(nginx_pids); do taskset -a -p -c "0-$last" "$p" >/dev/null 2>&1 || true; done
  echo "$pair"
}
nginx_pids() { local m; m=$(cat "$work/nginx.pid"); echo "$m" $(pgrep -P "$m"); }

echo "| machine | $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) |" >"$work/header"
echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |" >>"$work/header"
echo "| load before | $(cut -d' ' -f1-3 /proc/loadavg) |" >>"$work/header"
echo "| command | bench/proxy/run.sh $names $seconds $connections (wrk -t2 -c$connections) |" >>"$work/header"

read -r d_rps d_p50 d_p99 < <(drive "$origin" "$work/allowed.lua")
d_mbs=$(download)
echo "direct: $d_rps req/s, p99 $d_p99 ms, $d_mbs MiB/s" >&2

# sheepdog: build the snapshot once, then start from it.
bench_policy "$work/policy.toml"
# $BENCH_PROXY_BIN runs another build (an older commit, to compare).
if [ -n "${BENCH_PROXY_BIN:-}" ]; then
  proxy_bin=$BENCH_PROXY_BIN
else
  (cd "$root" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target} cargo build -q --release -p sheepdog-proxy --example bench_proxy)
  proxy_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/bench_proxy
fi
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1

results=()
run_proxy() { # label port pids...
  local label=$1 port=$2; shift 2
  read -r rps p50 p99 < <(drive "$port" "$work/allowed.lua")
  read -r b_rps _ _ < <(drive "$port" "$work/blocked.lua")
  local mbs direct_mbs; read -r mbs direct_mbs < <(download_pair "$port")
  local a_mbs a_direct; read -r a_mbs a_direct < <(download_pair_apart "$port" "$@")
  local added; added=$(awk -v a="$p99" -v b="$d_p99" 'BEGIN { printf "%.3f", a - b }')
  local pct a_pct
  pct=$(awk -v a="$mbs" -v b="$direct_mbs" 'BEGIN { printf "%.0f", 100 * a / b }')
  a_pct=$(awk -v a="$a_mbs" -v b="$a_direct" 'BEGIN { printf "%.0f", 100 * a / b }')
  local rss; rss=$(rss_kb $(printf '/proc/%s/status ' "$@") 2>/dev/null || echo 0)
  echo "$label: $rps req/s allowed, $b_rps blocked, p99 $p99 ms (+$added), tunnel $mbs MiB/s ($pct%), client apart $a_mbs MiB/s ($a_pct%)" >&2
  results+=("| $label | $rps | $p50 | $p99 | $added | $b_rps | $mbs ($pct% of $direct_mbs direct, in turns) | $a_mbs ($a_pct% of $a_direct) | $(( rss / 1024 )) |")
}

port=$(free_port)
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" 2>"$work/sheepdog.log" &
pid=$!; pids+=("$pid")
wait_port "$port"
run_proxy "sheepdog (events off)" "$port" "$pid"
kill -INT "$pid"; wait "$pid" 2>/dev/null || true

port=$(free_port)
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" --log "$work/events.sqlite" 2>"$work/sheepdog-log.log" &
pid=$!; pids+=("$pid")
wait_port "$port"
run_proxy "sheepdog (every request logged, pages read)" "$port" "$pid"
kill -INT "$pid"; wait "$pid" 2>/dev/null || true

# squid + squidGuard with the same list, as the unprivileged proxy user.
mkdir -p "$work/sg/blocked" "$work/sglog"
cp "$work/blocked.txt" "$work/sg/blocked/domains"
cat >"$work/squidGuard.conf" <<SG
dbhome $work/sg
logdir $work/sglog
dest blocked {
  domainlist blocked/domains
}
acl {
  default {
    pass !blocked all
    redirect 302:http://127.0.0.1:$origin/blocked.html
  }
}
SG
echo "building the squidGuard database" >&2
sg_start=$(date +%s)
squidGuard -c "$work/squidGuard.conf" -C all >"$work/sg-build.log" 2>&1 || true
echo "squidGuard database built in $(( $(date +%s) - sg_start )) s" >&2
chown -R proxy:proxy "$work/sg" "$work/sglog"
port=$(free_port)
cat >"$work/squid.conf" <<SQUID
http_port 127.0.0.1:$port
acl localnet src 127.0.0.0/8
http_access allow localnet
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_log $work/squid-cache.log
pid_filename $work/squid.pid
coredump_dir $work
cache_effective_user proxy
url_rewrite_program /usr/bin/squidGuard -c $work/squidGuard.conf
url_rewrite_children 16 startup=8 idle=4 concurrency=0
shutdown_lifetime 1 seconds
SQUID
touch "$work/squid-cache.log"; chown proxy:proxy "$work/squid-cache.log"
squid_bin=$(command -v squid || echo /usr/sbin/squid)
"$squid_bin" -N -f "$work/squid.conf" >"$work/squid.log" 2>&1 &
pid=$!; pids+=("$pid")
wait_port "$port"
sleep 2 # let the rewrite helpers load the database
run_proxy "squid $("$squid_bin" -v | awk 'NR==1 { print $4 }') + squidGuard" "$port" "$pid" $(pgrep -P "$pid" || true) $(pgrep -f "squidGuard -c $work" || true)
kill "$pid"; wait "$pid" 2>/dev/null || true

cat "$work/header"
echo
echo "| proxy | allowed req/s | p50 ms | p99 ms | p99 added ms | blocked req/s | 1 GiB via CONNECT, MiB/s, all sharing the cores | the same, curl on a core of its own | RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| nginx direct | $d_rps | $d_p50 | $d_p99 | 0 | | $d_mbs (direct) | | |"
printf '%s\n' "${results[@]}"
