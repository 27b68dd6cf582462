#!/usr/bin/env bash
# Where a proxy's CPU per request goes: user space against the kernel, tollgate beside
# nginx, each against the upstream it fronts. The shared harness's `proxy/up` adds the two;
# this splits them (from /proc/<pid>/stat: utime and stime, all threads), so a target can be
# checked against what the kernel alone costs.
#
#   benches/cpu_split.sh [path/to/tollgate]     (default: target/release/tollgate)
#
# As the harness: every server on CPU SRV_CPU (default 0) with one worker
# (TOKIO_WORKER_THREADS=1; nginx worker_processes 1), the load generator on LOAD_CPU
# (default 1), 64 connections. Rows: `h1` (wrk, plain HTTP/1.1, keep-alive) and `h2` (h2load
# -m 1, HTTP/2 over TLS); for each, tollgate (an open route `/`, access log off) and an nginx
# proxy with the harness's peers/nginx-proxy.conf settings, both to one upstream nginx
# answering 200 {"ok":true}. Each row: 2 s unrecorded, then DURATION seconds (default 8)
# measured, ROUNDS times (default 2) alternating the order. Prints per request: the proxy's
# user and system CPU µs, the upstream's, `proxy/up` (as the harness) and `sys/up` (the
# proxy's system time alone over the upstream's whole CPU: the floor `proxy/up` cannot go
# under while the proxy makes the same system calls). PORT_BASE (default 38000) moves the
# ports. Needs nginx, wrk, h2load, taskset, openssl, curl.
set -euo pipefail

BIN=$(realpath "${1:-target/release/tollgate}")
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-2}
SRV_CPU=${SRV_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${PORT_BASE:-38000}
UP_PORT=$((PORT_BASE + 80)) GW_PORT=$((PORT_BASE + 180)) IN_PORT=$((PORT_BASE + 190))
NGX_PORT=$((PORT_BASE + 101)) TLS_PORT=$((PORT_BASE + 443)) NGX_TLS_PORT=$((PORT_BASE + 444))
RUN=$(mktemp -d /tmp/cpu-split.XXXXXX)
OUT=$RUN
PIDS=()

die() { echo "cpu_split: $*" >&2; exit 1; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # wait_http, self_signed_cert, upstream_nginx_conf, nginx_proxy_conf, gateway_open_conf

self_signed_cert "$RUN"
mkdir -p "$RUN/up" "$RUN/ngx"
upstream_nginx_conf "$UP_PORT" | sed 's/^daemon off;/daemon off;\nmaster_process off;/' \
  > "$RUN/up/nginx.conf"
nginx_proxy_conf "$UP_PORT" "$RUN" "$NGX_PORT" "$NGX_TLS_PORT ssl http2" > "$RUN/ngx/nginx.conf"
gateway_open_conf "$GW_PORT" "$IN_PORT" "$TLS_PORT" "$UP_PORT" > "$RUN/gateway.toml"

on_load() { taskset -c "$LOAD_CPU" "$@"; }
# Started through taskset directly (not a shell function), so that $! is the server's PID.
taskset -c "$SRV_CPU" nginx -p "$RUN/up/" -c "$RUN/up/nginx.conf" -e "$RUN/up/error.log" &
UP_PID=$!
PIDS+=("$UP_PID")
taskset -c "$SRV_CPU" nginx -p "$RUN/ngx/" -c "$RUN/ngx/nginx.conf" -e "$RUN/ngx/error.log" &
NGX_PID=$!
PIDS+=("$NGX_PID")
(cd "$RUN" && TOKIO_WORKER_THREADS=1 RUST_LOG=warn exec taskset -c "$SRV_CPU" "$BIN" run \
  --config gateway.toml > "$RUN/gateway.log" 2>&1) &
GW_PID=$!
PIDS+=("$GW_PID")
wait_http "http://127.0.0.1:$IN_PORT/healthz"
wait_http "http://127.0.0.1:$NGX_PORT/"
curl -fsSk "https://127.0.0.1:$TLS_PORT/" | grep -q '"ok"' || die "tollgate's TLS row fails"

# load MODE PORT SECONDS: prints the number of requests answered.
load() {
  local out
  if [[ $1 == h2 ]]; then
    out=$(on_load h2load -c 64 -m 1 -D "$3" "https://127.0.0.1:$2/")
    awk '/^requests:/ { print $8 }' <<< "$out"
  else
    out=$(on_load wrk -t1 -c64 -d"$3"s "http://127.0.0.1:$2/")
    grep -q 'Non-2xx' <<< "$out" && die "non-2xx answers from :$2"
    awk '/requests in/ { print $1 }' <<< "$out"
  fi
}
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# measure MODE NAME PID PORT
measure() {
  local pu ps uu us pu2 ps2 uu2 us2 n
  load "$1" "$4" 2 > /dev/null
  read -r pu ps < <(ticks "$3"); read -r uu us < <(ticks "$UP_PID")
  n=$(load "$1" "$4" "$DURATION")
  read -r pu2 ps2 < <(ticks "$3"); read -r uu2 us2 < <(ticks "$UP_PID")
  awk -v row="$1 $2" -v n="$n" -v hz="$(getconf CLK_TCK)" -v a=$((pu2 - pu)) -v b=$((ps2 - ps)) \
    -v c=$((uu2 - uu)) -v d=$((us2 - us)) 'BEGIN { f = 1e6 / hz / n;
    printf "%-12s %8d %9.2f %9.2f %9.2f %9.2f %9.2f %8.2f\n", row, n, a * f, b * f, c * f, d * f,
      (a + b) / (c + d), b / (c + d) }'
}

echo "per request, CPU µs (user / system) of the proxy and of the upstream; $DURATION s per row"
printf '%-12s %8s %9s %9s %9s %9s %9s %8s\n' row requests p_user p_sys up_user up_sys proxy/up sys/up
for ((round = 1; round <= ROUNDS; round++)); do
  rows=("h1 tollgate $GW_PID $GW_PORT" "h1 nginx $NGX_PID $NGX_PORT"
    "h2 tollgate $GW_PID $TLS_PORT" "h2 nginx $NGX_PID $NGX_TLS_PORT")
  if ((round % 2 == 0)); then
    rows=("${rows[3]}" "${rows[2]}" "${rows[1]}" "${rows[0]}")
  fi
  for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    measure $row
  done
done
