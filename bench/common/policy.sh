# Shared by bench/dns/*.sh and bench/proxy/run.sh (sourced, not run).

# bench_policy FILE: the one-group policy every server benchmark filters
# with: the generated list (blocked.txt beside FILE) as "malware", blocked.
bench_policy() {
  cat >"$1" <<POLICY
fallback_group = "guest"
[school]
name = "Bench"
time_zone = "Europe/London"
[[lists]]
name = "bench"
source = "blocked.txt"
format = "domains"
category = "malware"
[[groups]]
name = "guest"
default = "allow"
[groups.categories]
malware = "block"
POLICY
}

# bench_dns_server ROOT: the path of the DNS bench_server to run:
# $BENCH_SERVER_BIN (a build from elsewhere, an older commit to compare),
# otherwise this checkout's, built now.
bench_dns_server() {
  local root=$1
  if [ -n "${BENCH_SERVER_BIN:-}" ]; then
    echo "$BENCH_SERVER_BIN"
    return
  fi
  (cd "$root" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target} cargo build -q --release -p sheepdog-dns --example bench_server)
  echo "${CARGO_TARGET_DIR:-$root/target}/release/examples/bench_server"
}
