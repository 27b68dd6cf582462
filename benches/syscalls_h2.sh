#!/usr/bin/env bash
# System calls per proxied HTTP/2-over-TLS request, tollgate beside nginx: what instruction
# counts (callgrind_proxy.sh) leave out, and what the shared harness's CPU time includes.
#
#   benches/syscalls_h2.sh [path/to/tollgate]     (default: target/release/tollgate)
#
# Starts an upstream nginx (GET / -> 200 {"ok":true}), tollgate with one worker
# (TOKIO_WORKER_THREADS=1) and an open route `/` to it on a TLS listener, and an nginx proxy
# (one worker, HTTP/2 over TLS, keep-alive pool to the upstream, the harness's
# peers/nginx-proxy.conf settings); a throw-away self-signed P-256 certificate for both. For
# each proxy: WARM requests unrecorded (h2load -c C), then `strace -c -f` attached to the
# proxy while h2load sends N requests over C connections (-m 1: one stream at a time on
# each, as the harness); prints each system call's count per request. strace slows the
# proxy, not what it asks of the kernel. Needs nginx, h2load, strace, openssl, curl.
# PORT_BASE (default 37000) moves the ports.
set -euo pipefail

BIN=$(realpath "${1:-target/release/tollgate}")
N=${N:-20000}
C=${C:-64}
WARM=${WARM:-2000}
PORT_BASE=${PORT_BASE:-37000}
UP_PORT=$((PORT_BASE + 80)) GW_PORT=$((PORT_BASE + 180)) IN_PORT=$((PORT_BASE + 190))
TLS_PORT=$((PORT_BASE + 443)) NGX_PORT=$((PORT_BASE + 444))
RUN=$(mktemp -d /tmp/syscalls-h2.XXXXXX)
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # self_signed_cert, upstream_nginx_conf, nginx_proxy_conf, gateway_open_conf

self_signed_cert "$RUN"

mkdir -p "$RUN/up" "$RUN/ngx"
upstream_nginx_conf "$UP_PORT" > "$RUN/up/nginx.conf"
nginx_proxy_conf "$UP_PORT" "$RUN" "$NGX_PORT ssl http2" > "$RUN/ngx/nginx.conf"
gateway_open_conf "$GW_PORT" "$IN_PORT" "$TLS_PORT" "$UP_PORT" > "$RUN/gateway.toml"

nginx -p "$RUN/up/" -c "$RUN/up/nginx.conf" -e "$RUN/up/error.log" &
PIDS+=($!)
nginx -p "$RUN/ngx/" -c "$RUN/ngx/nginx.conf" -e "$RUN/ngx/error.log" &
NGX_PID=$!
PIDS+=("$NGX_PID")
(cd "$RUN" && TOKIO_WORKER_THREADS=1 RUST_LOG=warn exec "$BIN" run --config gateway.toml \
  > "$RUN/gateway.log" 2>&1) &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$IN_PORT/healthz" >/dev/null 2>&1 &&
    curl -fsSk "https://127.0.0.1:$NGX_PORT/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsSk "https://127.0.0.1:$TLS_PORT/" | grep -q '"ok"' || { cat "$RUN/gateway.log"; exit 1; }

measure() { # NAME PID PORT
  local url="https://127.0.0.1:$3/" out
  h2load -n "$WARM" -c "$C" -m 1 "$url" > /dev/null
  strace -c -f -o "$RUN/$1.strace" -p "$2" &
  local st=$!
  sleep 1 # strace attaches
  out=$(h2load -n "$N" -c "$C" -m 1 "$url")
  grep -q " $N succeeded" <<< "$out" || {
    echo "$1: not every request succeeded:"; grep -E "requests:" <<< "$out"; }
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  printf '%-8s' "$1"
  awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { name = $NF; calls = $4;
      if (calls / n >= 0.005) printf " %s %.2f", name, calls / n; tot += calls }
    END { printf "  (all %.2f per request)\n", tot / n }' "$RUN/$1.strace"
}

echo "N=$N requests over $C connections (h2load -m 1), after $WARM unrecorded; per request:"
measure tollgate "$GW_PID" "$TLS_PORT"
measure nginx "$NGX_PID" "$NGX_PORT"
