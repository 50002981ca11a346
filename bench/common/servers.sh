# Shared by the proxy benchmarks in bench/proxy (sourced, not run).

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

# bench_origin: nginx 1.22 (one worker, keep-alive, `sendfile`) on a free
# loopback port, $origin, serving $work/www: a small page, index.html,
# and big, a sparse 1 GiB file (it costs no disk). Started in the
# background, its PID in $pids; returns once it accepts connections.
bench_origin() {
  mkdir -p "$work/www"
  printf 'hello from the origin, a small page of the kind a proxy mostly carries\n' >"$work/www/index.html"
  truncate -s 1G "$work/www/big"
  origin=$(free_port)
  cat >"$work/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 10000000;
  keepalive_timeout 600;
  server { listen 127.0.0.1:$origin; root $work/www; }
}
NGINX
  "$(command -v nginx || echo /usr/sbin/nginx)" -c "$work/nginx.conf" -p "$work" 2>"$work/nginx.log" &
  pids+=("$!")
  wait_port "$origin"
}
