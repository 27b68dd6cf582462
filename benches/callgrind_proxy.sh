#!/usr/bin/env bash
# Instructions per proxied request, by the way a request reaches the gateway, counted by
# callgrind: repeatable on a shared, noisy machine where wall-clock figures are not.
#
#   benches/callgrind_proxy.sh [path/to/tollgate]     (default: target/release/tollgate)
#
# Starts an nginx upstream (GET / -> 200 {"ok":true}) on 127.0.0.1:28080 and tollgate under
# `valgrind --tool=callgrind` with one worker (TOKIO_WORKER_THREADS=1) and one open route
# `/` to it, plain listener :28180 and TLS listener :28443 (a throw-away self-signed
# certificate). For each row: WARM requests unrecorded (the upstream connection and the
# client connection are made there), the counters zeroed, N requests on one keep-alive
# client connection (h2load -c 1), the counters dumped; prints the whole process's
# instructions (all threads) divided by N. Needs valgrind, nginx, h2load, openssl, curl.
#
# The row h1-guarded is h1-get on a `bearer` route (`/guarded`, strip_prefix) with a token the
# gateway issued to client `bench` (client_credentials), the verify cache warm after WARM.
# PORT_BASE (default 28000) moves the four ports by the same offset, for two runs side by side.
# ACCESS_LOG=file writes the access log (JSON) to a file in the run directory instead of
# `off`: run twice, the difference per row is the access log's own cost.
#   ROWS='h1-guarded' benches/callgrind_proxy.sh; ACCESS_LOG=file ROWS='h1-guarded' benches/callgrind_proxy.sh
set -euo pipefail

BIN=${1:-target/release/tollgate}
BIN=$(realpath "$BIN")
N=${N:-4000}
WARM=${WARM:-200}
ROWS=${ROWS:-h1-get h1-guarded h1-post h2c-get h2c-post h2-tls-get}
case ${ACCESS_LOG:-off} in
  off) ACCESS=off ;;
  file) ACCESS=access.log ;;
  *) echo "ACCESS_LOG is off or file" >&2; exit 2 ;;
esac
RUN=$(mktemp -d /tmp/callgrind-proxy.XXXXXX)
# PORT_BASE moves all four ports (two runs side by side need different bases).
PORT_BASE=${PORT_BASE:-28000}
UP_PORT=$((PORT_BASE + 80)) GW_PORT=$((PORT_BASE + 180)) IN_PORT=$((PORT_BASE + 190)) TLS_PORT=$((PORT_BASE + 443))

cleanup() {
  [[ -n ${GW_PID:-} ]] && kill "$GW_PID" 2>/dev/null || true
  [[ -n ${UP_PID:-} ]] && kill "$UP_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # self_signed_cert, upstream_nginx_conf, nginx_proxy_conf, gateway_head

mkdir -p "$RUN/nginx"
upstream_nginx_conf "$UP_PORT" > "$RUN/nginx/nginx.conf"
nginx -p "$RUN/nginx/" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/error.log" &
UP_PID=$!

self_signed_cert "$RUN"
{
  gateway_head "$GW_PORT" "$IN_PORT" "$TLS_PORT"
  cat <<EOF

[oauth.scopes]
bench = "Benchmark"

[log]
access = "$ACCESS"

# Secret: callgrind-bench-secret (sha256 below).
[[clients]]
id = "bench"
secret_hash = "sha256:$(printf %s callgrind-bench-secret | sha256sum | cut -d' ' -f1)"
grant_types = ["client_credentials"]
scopes = ["bench"]

[[routes]]
name = "up"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP_PORT"
auth = "none"

[[routes]]
name = "guarded"
path_prefix = "/guarded"
upstream = "http://127.0.0.1:$UP_PORT"
auth = "bearer"
scopes = ["bench"]
strip_prefix = true
EOF
} > "$RUN/gateway.toml"
head -c 64 /dev/zero | tr '\0' 'b' > "$RUN/body"

(cd "$RUN" && TOKIO_WORKER_THREADS=1 RUST_LOG=warn exec valgrind --tool=callgrind \
  --callgrind-out-file="$RUN/cg.out" --dump-instr=no --compress-strings=no "$BIN" run --config gateway.toml \
  > "$RUN/gateway.log" 2>&1) &
GW_PID=$!
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$IN_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$GW_PORT/" | grep -q '"ok"' || { cat "$RUN/gateway.log"; exit 1; }
TOKEN=$(curl -fsS -u bench:callgrind-bench-secret -d grant_type=client_credentials \
  "http://127.0.0.1:$GW_PORT/oauth/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# valgrind's own pid is the process callgrind_control talks to.
VG_PID=$(pgrep -f "callgrind-out-file=$RUN/cg.out" | head -n1)

load() { # ROW COUNT
  local url="http://127.0.0.1:$GW_PORT/" args=(-c 1 -m 1 -n "$2")
  case $1 in
    h1-get) args+=(--h1) ;;
    h1-guarded) args+=(--h1 -H "Authorization: Bearer $TOKEN"); url+=guarded/ ;;
    h1-post) args+=(--h1 -d "$RUN/body") ;;
    h2c-get) ;;
    h2c-post) args+=(-d "$RUN/body") ;;
    h2-tls-get) url="https://127.0.0.1:$TLS_PORT/" ;;
  esac
  h2load "${args[@]}" "$url"
}

echo "binary: $BIN (access log: $ACCESS)"
echo "N=$N requests per row on one client connection, after $WARM unrecorded"
for row in $ROWS; do
  load "$row" "$WARM" > /dev/null
  callgrind_control -z "$VG_PID" > /dev/null 2>&1
  out=$(load "$row" "$N")
  grep -q "succeeded, 0 errored" <<< "$out" || grep -q " $N succeeded" <<< "$out" || {
    echo "$row: not every request succeeded:"; grep -E "requests:|status codes:" <<< "$out"; }
  callgrind_control -d "$row" "$VG_PID" > /dev/null 2>&1
  dump=$(ls -t "$RUN"/cg.out.* | head -n1)
  total=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
  printf '%-12s %10d instructions/request\n' "$row" $((total / N))
done
