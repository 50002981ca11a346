# Shared by the server benchmarks in bench/proxy (sourced, not run).

# bench_work: a fresh working directory in $work (readable by the
# unprivileged users squid and nginx run as), an empty $pids, and an EXIT
# trap that stops every process in $pids and removes $work.
bench_work() {
  work=$(mktemp -d)
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$work"
}

# A loopback TCP port free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to two minutes for PORT on 127.0.0.1 to accept connections.
wait_port() {
  for _ in $(seq 1 1200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.1; done
  echo "port $1 never opened" >&2
  exit 1
}
