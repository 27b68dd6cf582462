#!/usr/bin/env bash
# nginx's instructions per proxied request, counted as callgrind_proxy.sh counts tollgate's:
# the same tool, so the two compare (callgrind counts instructions, not system calls or cache
# misses; benches/syscalls_h2.sh counts the system calls).
#
#   benches/callgrind_nginx.sh
#
# An upstream nginx (GET / -> 200 {"ok":true}) and, under `valgrind --tool=callgrind`, an
# nginx proxy with one worker process (master_process off) configured as the shared harness's
# peers/nginx-proxy.conf (keep-alive pool to the upstream, access log off): HTTP/1.1 plain and
# HTTP/2 over TLS (a throw-away P-256 certificate). Rows as callgrind_proxy.sh's: WARM
# requests unrecorded, counters zeroed, N requests on one client connection
# (h2load -c 1 -m 1), the whole process's instructions divided by N.
# PORT_BASE (default 38000) moves the ports. Needs valgrind, nginx, h2load, openssl, curl.
set -euo pipefail

N=${N:-3000}
WARM=${WARM:-200}
ROWS=${ROWS:-h1-get h2-tls-get}
PORT_BASE=${PORT_BASE:-38000}
UP_PORT=$((PORT_BASE + 80)) PLAIN_PORT=$((PORT_BASE + 180)) TLS_PORT=$((PORT_BASE + 443))
RUN=$(mktemp -d /tmp/callgrind-nginx.XXXXXX)

cleanup() {
  [[ -n ${VG_PID:-} ]] && kill "$VG_PID" 2>/dev/null || true
  [[ -n ${UP_PID:-} ]] && kill "$UP_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # self_signed_cert, upstream_nginx_conf, nginx_proxy_conf

self_signed_cert "$RUN"
mkdir -p "$RUN/up" "$RUN/proxy"
upstream_nginx_conf "$UP_PORT" > "$RUN/up/nginx.conf"
nginx_proxy_conf "$UP_PORT" "$RUN" "$PLAIN_PORT" "$TLS_PORT ssl http2" > "$RUN/proxy/nginx.conf"
nginx -p "$RUN/up/" -c "$RUN/up/nginx.conf" -e "$RUN/up/error.log" &
UP_PID=$!
valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.out" --dump-instr=no \
  --compress-strings=no nginx -p "$RUN/proxy/" -c "$RUN/proxy/nginx.conf" \
  -e "$RUN/proxy/error.log" > "$RUN/valgrind.log" 2>&1 &
VG_PID=$!
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$PLAIN_PORT/" >/dev/null 2>&1 && break
  sleep 0.1
done

load() { # ROW COUNT
  case $1 in
    h1-get) h2load --h1 -c 1 -m 1 -n "$2" "http://127.0.0.1:$PLAIN_PORT/" ;;
    h2-tls-get) h2load -c 1 -m 1 -n "$2" "https://127.0.0.1:$TLS_PORT/" ;;
  esac
}

echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), N=$N requests per row on one client connection, after $WARM unrecorded"
for row in $ROWS; do
  load "$row" "$WARM" > /dev/null
  callgrind_control -z "$VG_PID" > /dev/null 2>&1
  out=$(load "$row" "$N")
  grep -q " $N succeeded" <<< "$out" || {
    echo "$row: not every request succeeded:"; grep -E "requests:" <<< "$out"; }
  callgrind_control -d "$row" "$VG_PID" > /dev/null 2>&1
  dump=$(ls -t "$RUN"/cg.out.* | head -n1)
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  printf '%-12s %10d instructions/request\n' "$row" $((total / N))
done
