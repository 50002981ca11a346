#!/usr/bin/env bash
# Where a 1 GiB CONNECT download's CPU goes: curl (user + system), nginx
# and sheepdog's proxy, in CPU seconds per GiB, for a direct download and
# one through the tunnel, in two layouts:
#   shared: all three processes free on every core (the scheduler places
#           them);
#   apart:  curl on the last CPU, nginx and the proxy on the others (as
#           bench/proxy/run.sh's "curl on a core of its own" column).
#
#   bench/proxy/tunnel-cpu.sh [ROUNDS]        (default 3 of each)
#
# Everything on 127.0.0.1. Needs nginx and curl (bench/proxy/run.sh
# installs them). The proxy filters an empty list: the tunnel's cost does
# not depend on it.
set -euo pipefail
rounds=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
. "$root/bench/common/servers.sh"
bench_work
# CPU seconds (user + system, every thread) a process has used.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

bench_origin
nginx_master=$(cat "$work/nginx.pid")
nginx_worker=$(pgrep -P "$nginx_master" | head -1)

: >"$work/blocked.txt"
bench_policy "$work/policy.toml"
cargo build -q --release -p sheepdog-proxy --example bench_proxy
proxy_bin=$CARGO_TARGET_DIR/release/examples/bench_proxy
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1
port=$(free_port)
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" 2>"$work/proxy.log" &
proxy=$!
pids+=("$proxy")
wait_port "$port"
# The first read of the sparse file fills the page cache.
curl -s -o /dev/null "http://127.0.0.1:$origin/big"

last=$(( $(nproc) - 1 ))
servers=0; (( last > 0 )) && servers="0-$(( last - 1 ))"
pin_servers() { # cpus
  for p in "$nginx_master" "$nginx_worker" "$proxy"; do taskset -a -p -c "$1" "$p" >/dev/null; done
}

# One download: "MiB/s curl_s nginx_s proxy_s".
one() { # layout direct|tunnel
  local run=(); [ "$1" = apart ] && run=(taskset -c "$last")
  local via=(); [ "$2" = tunnel ] && via=(--proxytunnel -x "http://127.0.0.1:$port")
  local n0 p0 n1 p1 out
  n0=$(cpu_s "$nginx_worker"); p0=$(cpu_s "$proxy")
  out=$( { /usr/bin/time -f "%U %S" "${run[@]}" curl -s -o /dev/null -w '%{speed_download}\n' "${via[@]}" "http://127.0.0.1:$origin/big"; } 2>&1 )
  n1=$(cpu_s "$nginx_worker"); p1=$(cpu_s "$proxy")
  awk -v o="$out" -v n0="$n0" -v n1="$n1" -v p0="$p0" -v p1="$p1" 'BEGIN {
    split(o, f, /[ \n]+/)
    printf "%.0f %.2f %.2f %.2f\n", f[1] / 1048576, f[2] + f[3], n1 - n0, p1 - p0
  }'
}

echo "| layout | download | MiB/s | curl CPU s/GiB | nginx | proxy | total |"
echo "|---|---|---|---|---|---|---|"
for layout in shared apart; do
  if [ "$layout" = apart ]; then pin_servers "$servers"; else pin_servers "0-$last"; fi
  for _ in $(seq 1 "$rounds"); do
    for kind in direct tunnel; do
      read -r mibs c n p < <(one "$layout" "$kind")
      echo "| $layout | $kind | $mibs | $c | $n | $p | $(awk -v a="$c" -v b="$n" -v d="$p" 'BEGIN { printf "%.2f", a + b + d }') |"
    done
  done
done
