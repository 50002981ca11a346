#!/usr/bin/env bash
# The proxy's own cost per allowed plain-HTTP request, in instructions,
# under callgrind: deterministic, so it can be compared across commits on
# a busy machine where requests per second cannot.
#
#   bench/proxy/callgrind.sh [NAMES] [REQUESTS] [CONNECTIONS]
#                                   (defaults: 100000 names, 20000 requests, 4)
#
# Runs crates/proxy/examples/bench_proxy.rs (release; $BENCH_PROXY_BIN to
# count another build) under valgrind's callgrind twice, in front of a
# local nginx: once serving one request per connection, once serving
# REQUESTS more, sent by CONNECTIONS clients over keep-alive connections
# (absolute-form GETs, as a browser sends them to a proxy). The difference,
# divided by REQUESTS, is the cost of one request. Events are off, as in the
# headline row of bench/proxy/run.sh.
set -euo pipefail
names=${1:-100000}
requests=${2:-20000}
connections=${3:-4}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/bench/common/policy.sh"
. "$root/bench/common/servers.sh"
bench_work
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq valgrind; }

python3 - "$names" "$work" <<'PY'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/blocked.txt", "w") as f:
    for i in range(n):
        f.write(f"site{i}.b{i % 997}.blocked.bench\n")
PY
bench_origin

bench_policy "$work/policy.toml"
if [ -n "${BENCH_PROXY_BIN:-}" ]; then
  proxy_bin=$BENCH_PROXY_BIN
else
  (cd "$root" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target} cargo build -q --release -p sheepdog-proxy --example bench_proxy)
  proxy_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/bench_proxy
fi
"$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" 127.0.0.1:1

# CONNECTIONS keep-alive clients, each sending COUNT requests in turn.
cat >"$work/client.py" <<'PY'
import http.client, sys, threading
port, origin, count, connections = (int(a) for a in sys.argv[1:5])
failures = []
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(count):
        conn.request("GET", f"http://127.0.0.1:{origin}/index.html",
                     headers={"Host": f"127.0.0.1:{origin}"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            failures.append(response.status)
    conn.close()
threads = [threading.Thread(target=client) for _ in range(connections)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} requests failed: {failures[:5]}")
PY

# instructions PER_CONNECTION: total instructions of one run.
instructions() {
  local port
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$proxy_bin" "$work/policy.toml" "$work/snapshot.sdsnap" "127.0.0.1:$port" \
    2>"$work/valgrind.log" &
  local pid=$!
  wait_port "$port"
  python3 "$work/client.py" "$port" "$origin" "$1" "$connections"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  # CALLGRIND_KEEP=DIR keeps each profile, for callgrind_annotate.
  [ -n "${CALLGRIND_KEEP:-}" ] && cp "$work/cg.out" "$CALLGRIND_KEEP/callgrind.proxy-$1.out"
  awk '/^summary:/ { print $2 }' "$work/cg.out"
}

base=$(instructions 1)
total=$(instructions $(( 1 + requests / connections )))
echo "| requests | connections | instructions per allowed request |"
echo "|---|---|---|"
echo "| $(( requests / connections * connections )) | $connections | $(( (total - base) / (requests / connections * connections) )) |"
