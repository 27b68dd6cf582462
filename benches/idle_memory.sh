#!/usr/bin/env bash
# Idle keep-alive connections: what N of them cost tollgate in memory and in upstream
# connections. Each connection makes one guarded request (a bearer token on a `bearer`
# route, proxied to the upstream) and then stays open and idle; tollgate's VmRSS and open
# descriptors are read before and after. Method and figures: benches/README.md ("Idle
# connections").
#
#   benches/idle_memory.sh                                   # release binary, 10000 connections
#   TOLLGATE=target/debug/tollgate N=2000 benches/idle_memory.sh   # a functional run
#   LISTENER=tls benches/idle_memory.sh                      # HTTP/1.1 over TLS
#   ENGINE=hyper benches/idle_memory.sh                      # a POST each: hyper's idle connections
#
# Knobs (env):
#   TOLLGATE     the binary under test                        target/release/tollgate
#   N            idle connections                             10000
#   LISTENER     plain | tls (HTTP/1.1 by ALPN)               plain
#   ENGINE       fast (a GET each: the fast lane) | hyper (a POST with a body each: handed to hyper)   fast
#   BODY         bytes in each POST's body (ENGINE=hyper)  4
#   CONCURRENCY  connections set up at once                   64
#   WARM         connections (one request each, closed) before the baseline   200
#   SETTLE       seconds to wait before each RSS reading      2
#   UPSTREAM     nginx | tollgate | auto                      auto (nginx when installed)
#   BUDGET_KB    fail when the RSS delta exceeds this         24576 (24 MiB; 0: never fail)
#   OUT          run directory                                bench/run/idle-<timestamp>
#   PORT_BASE    first of four loopback ports                 18230
# Exit status: 0 when every request was answered 200 and the RSS delta is within
# BUDGET_KB; 1 otherwise; 2 when the set-up failed.
set -euo pipefail
cd "$(dirname "$0")/.."

TOLLGATE=${TOLLGATE:-target/release/tollgate}
N=${N:-10000}
LISTENER=${LISTENER:-plain}
ENGINE=${ENGINE:-fast}
BODY=${BODY:-4}
CONCURRENCY=${CONCURRENCY:-64}
WARM=${WARM:-200}
SETTLE=${SETTLE:-2}
UPSTREAM=${UPSTREAM:-auto}
BUDGET_KB=${BUDGET_KB:-24576}
PORT_BASE=${PORT_BASE:-18230}
OUT=${OUT:-bench/run/idle-$(date +%Y%m%d-%H%M%S)}

PORT=$PORT_BASE                 # tollgate public listener
INTERNAL=$((PORT_BASE + 1))     # tollgate internal listener (/healthz)
TLS_PORT=$((PORT_BASE + 2))     # tollgate TLS listener
UP_PORT=$((PORT_BASE + 3))      # the upstream API (and, for a tollgate upstream, its internal listener)

# The bench client of benches/bench-gateway.toml (a BENCH secret, see that file).
CLIENT_ID=bench
CLIENT_SECRET=tollgate-bench-secret-2f9c7e1a
CLIENT_HASH=sha256:0a4a06dfa83806510e5bf0805cdd8e23ce19f09f38da626ddca60c942026e4ce

die() { echo "idle_memory: $*" >&2; exit 2; }
[[ -x $TOLLGATE ]] || die "no binary at $TOLLGATE (cargo build --release, or set TOLLGATE)"
command -v curl >/dev/null || die "curl is not installed"
command -v python3 >/dev/null || die "python3 is not installed (the idle client is benches/idle_client.py)"
[[ $LISTENER == plain || $LISTENER == tls ]] || die "LISTENER must be plain or tls"
[[ $ENGINE == fast || $ENGINE == hyper ]] || die "ENGINE must be fast or hyper"
if [[ $LISTENER == tls ]]; then command -v openssl >/dev/null || die "openssl is not installed"; fi
if [[ $UPSTREAM == auto ]]; then
  if command -v nginx >/dev/null; then UPSTREAM=nginx; else UPSTREAM=tollgate; fi
fi
# N client sockets here, N more in tollgate, plus the upstream's: raise the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > N + 200)) || die "open-file limit $(ulimit -n) is too low for N=$N (raise ulimit -Hn)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
source benches/lib.sh   # wait_http (the script runs from the project root)

# --- the upstream API (as in soak.sh) -------------------------------------------------
case $UPSTREAM in
  nginx)
    mkdir -p "$OUT/nginx"
    cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
worker_rlimit_nofile $((N + 1000));
events { worker_connections $((N + 1000)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
EOF
    nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" &
    PIDS+=($!)
    UPSTREAM_URL="http://127.0.0.1:$UP_PORT"
    wait_http "$UPSTREAM_URL/"
    ;;
  tollgate)
    cat >"$OUT/upstream.toml" <<EOF
[server]
listen = "127.0.0.1:$((PORT_BASE + 4))"
internal_listen = "127.0.0.1:$UP_PORT"
max_connections = $((N + 1000))
keepalive_timeout = "600s"
[oauth]
store = "memory"
[log]
access = "off"
EOF
    "$TOLLGATE" run -c "$OUT/upstream.toml" >"$OUT/upstream.log" 2>&1 &
    PIDS+=($!)
    UPSTREAM_URL="http://127.0.0.1:$UP_PORT/demo/mail"
    wait_http "http://127.0.0.1:$UP_PORT/healthz"
    ;;
  *) die "UPSTREAM must be nginx, tollgate or auto" ;;
esac

# --- tollgate ---------------------------------------------------------------------------
TLS_SECTION=
if [[ $LISTENER == tls ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
  TLS_SECTION="[server.tls]
listen = \"127.0.0.1:$TLS_PORT\"
cert = \"cert.pem\"
key = \"key.pem\""
fi
cat >"$OUT/idle.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
internal_listen = "127.0.0.1:$INTERNAL"
max_connections = $((N + 1000))
keepalive_timeout = "600s"           # the connections must outlive the measurement
$TLS_SECTION

[oauth]
issuer = "http://127.0.0.1:$PORT"
store = "memory"
access_token_ttl = "1h"

[oauth.scopes]
bench = "Benchmark"

[[clients]]
id = "$CLIENT_ID"
name = "Idle-connection bench"
secret_hash = "$CLIENT_HASH"
grant_types = ["client_credentials"]
scopes = ["bench"]

[log]
access = "off"

[verify]
source = "local"
cache_ttl = "600s"

[[routes]]
name = "idle"
path_prefix = "/"
upstream = "$UPSTREAM_URL"
auth = "bearer"
scopes = ["bench"]
EOF
"$TOLLGATE" run -c "$OUT/idle.toml" >"$OUT/tollgate.log" 2>&1 &
TG_PID=$!
PIDS+=("$TG_PID")
wait_http "http://127.0.0.1:$INTERNAL/healthz"

TOKEN=$(curl -fs --max-time 5 -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \
  "http://127.0.0.1:$PORT/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $TOKEN ]] || die "no token from /oauth/token (see $OUT/tollgate.log)"

CLIENT_ARGS=(127.0.0.1 "$PORT")
[[ $LISTENER == tls ]] && CLIENT_ARGS=(127.0.0.1 "$TLS_PORT")
CLIENT_FLAGS=()
[[ $LISTENER == tls ]] && CLIENT_FLAGS+=(--tls)
[[ $ENGINE == hyper ]] && CLIENT_FLAGS+=(--post --body-size "$BODY")

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$TG_PID/status"; }
fds() { find "/proc/$TG_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# run_client COUNT LOG: starts the idle client in the background (its PID in CLIENT_PID)
# and waits (bounded) for its READY line.
run_client() {
  python3 benches/idle_client.py "${CLIENT_ARGS[@]}" "$1" --token="$TOKEN" "${CLIENT_FLAGS[@]}" \
    --concurrency "$CONCURRENCY" --hold 3600 >"$2" 2>"$2.err" &
  CLIENT_PID=$!
  PIDS+=("$CLIENT_PID")
  local i
  for ((i = 0; i < 6000; i++)); do
    grep -qs "^READY" "$2" && return 0
    kill -0 "$CLIENT_PID" 2>/dev/null || die "the idle client exited early (see $2.err)"
    sleep 0.1
  done
  die "the idle client did not finish within 600 s (see $2.err)"
}

# --- warm-up: lazily built state (verification cache, metrics, pools) is not per connection
run_client "$WARM" "$OUT/warm.txt"
read -r _ warm_ok warm_failed _ <"$OUT/warm.txt"
kill "$CLIENT_PID"; wait "$CLIENT_PID" 2>/dev/null || true
((warm_failed == 0)) || die "warm-up: $warm_failed of $WARM requests were not answered 200"
sleep "$SETTLE"
before_rss=$(rss_kb)
before_fds=$(fds)

# --- N idle connections ---------------------------------------------------------------------
run_client "$N" "$OUT/idle.txt"
read -r _ ok failed took <"$OUT/idle.txt"
sleep "$SETTLE"
after_rss=$(rss_kb)
after_fds=$(fds)
open_gauge=$(curl -fs "http://127.0.0.1:$INTERNAL/metrics" |
  awk -v l="$([[ $LISTENER == tls ]] && echo tls || echo public)" \
    '$1 ~ "^tollgate_open_connections" && $1 ~ "listener=\"" l "\"" { print $2 }')

delta=$((after_rss - before_rss))
upstream_conns=$((after_fds - before_fds - ok))
{
  echo "idle connections of $(date -u +%FT%TZ): $TOLLGATE, $LISTENER listener, $ENGINE engine, upstream $UPSTREAM"
  echo "connections: $ok answered 200, $failed failed, set up in ${took}s ($CONCURRENCY at a time; tollgate_open_connections $open_gauge)"
  echo "RSS:  ${before_rss} kB -> ${after_rss} kB: +${delta} kB," \
    "$(awk -v d="$delta" -v n="$ok" 'BEGIN { printf "%.0f", n ? d * 1024 / n : 0 }') bytes per idle connection"
  echo "fds:  ${before_fds} -> ${after_fds}: $upstream_conns beyond the client connections (upstream connections and the like)"
} | tee "$OUT/summary.txt"

status=0
((failed == 0)) || { echo "FAIL: $failed requests were not answered 200"; status=1; }
# The per-connection figure divides by the answered connections: all must still be open.
((${open_gauge%.*} >= ok)) || { echo "FAIL: only $open_gauge of $ok connections were still open"; status=1; }
if ((BUDGET_KB > 0 && delta > BUDGET_KB)); then
  echo "FAIL: RSS grew by more than ${BUDGET_KB} kB"
  status=1
fi
exit $status
