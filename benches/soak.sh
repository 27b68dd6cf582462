#!/usr/bin/env bash
# Soak test: a release tollgate on a guarded route at ~70% of its peak for DURATION seconds
# with a mix of valid, invalid and expired bearer tokens, sampling its RSS and open file
# descriptors every SAMPLE seconds. Method and last result: benches/README.md ("Soak").
#
#   benches/soak.sh                       # 10 minutes
#   DURATION=60 benches/soak.sh           # a quick look
#
# Knobs (env):
#   TOLLGATE   release binary                      target/release/tollgate
#   DURATION   seconds of paced load               600
#   WARMUP     seconds into the paced run whose sample is the baseline   60 (DURATION/5 if less)
#   SAMPLE     seconds between RSS/fd samples      10
#   PEAK_SECONDS  length of the peak-finding run   15
#   LOAD       fraction of peak to run at          0.7
#   CONNS      wrk threads = connections            16
#   MIX        valid,invalid,expired weights       60,20,20
#   TOKENS     valid and expired tokens issued     20 each
#   UPSTREAM   nginx | tollgate | auto             auto (nginx when installed)
#   PIN        1: tollgate on CPU 0, wrk and the upstream on CPU 1     1
#   OUT        run directory                       bench/run/soak-<timestamp>
#   PORT_BASE  first of four loopback ports        18210
# Exit status: 0 when valid tokens got only 2xx, no socket errors, and RSS and fds ended
# within 10% of their after-warm-up values; 1 otherwise; 2 when the set-up failed.
set -euo pipefail
cd "$(dirname "$0")/.."

TOLLGATE=${TOLLGATE:-target/release/tollgate}
DURATION=${DURATION:-600}
SAMPLE=${SAMPLE:-10}
WARMUP=${WARMUP:-60}
((WARMUP * 5 <= DURATION)) || WARMUP=$((DURATION / 5))
PEAK_SECONDS=${PEAK_SECONDS:-15}
LOAD=${LOAD:-0.7}
CONNS=${CONNS:-16}
MIX=${MIX:-60,20,20}
TOKENS=${TOKENS:-20}
UPSTREAM=${UPSTREAM:-auto}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-18210}
OUT=${OUT:-bench/run/soak-$(date +%Y%m%d-%H%M%S)}

PORT=$PORT_BASE                 # tollgate public listener
INTERNAL=$((PORT_BASE + 1))     # tollgate internal listener (/healthz, /metrics)
UP_PORT=$((PORT_BASE + 2))      # the upstream API
UP_SPARE=$((PORT_BASE + 3))     # the tollgate-as-upstream's unused public listener

# The bench client of benches/bench-gateway.toml (a BENCH secret, see that file).
CLIENT_ID=bench
CLIENT_SECRET=tollgate-bench-secret-2f9c7e1a
CLIENT_HASH=sha256:0a4a06dfa83806510e5bf0805cdd8e23ce19f09f38da626ddca60c942026e4ce

die() { echo "soak: $*" >&2; exit 2; }
[[ -x $TOLLGATE ]] || die "no release binary at $TOLLGATE (cargo build --release, or set TOLLGATE)"
command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl is not installed"
if [[ $UPSTREAM == auto ]]; then
  if command -v nginx >/dev/null; then UPSTREAM=nginx; else UPSTREAM=tollgate; fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Command prefixes that pin to a CPU (taskset execs, so `$!` stays the server's own PID).
CPU0=() CPU1=()
if [[ $PIN == 1 ]] && command -v taskset >/dev/null; then CPU0=(taskset -c 0) CPU1=(taskset -c 1); fi

# Everything started is stopped by PID on exit.
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
source benches/lib.sh   # wait_http (the script runs from the project root)

# --- the upstream API ---------------------------------------------------------------
case $UPSTREAM in
  nginx)
    # As the shared harness's upstream: a constant JSON body from memory.
    mkdir -p "$OUT/nginx"
    cat >"$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
EOF
    "${CPU1[@]}" nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -e "$OUT/nginx/error.log" &
    PIDS+=($!)
    UPSTREAM_URL="http://127.0.0.1:$UP_PORT"
    wait_http "$UPSTREAM_URL/"
    ;;
  tollgate)
    # A second tollgate serving its demo mail API (internal listener): it answers 200 JSON
    # to any request carrying the X-Auth-Subject the gateway sets on a bearer route.
    cat >"$OUT/upstream.toml" <<EOF
[server]
listen = "127.0.0.1:$UP_SPARE"
internal_listen = "127.0.0.1:$UP_PORT"
[oauth]
store = "memory"
[log]
access = "off"
EOF
    "${CPU1[@]}" "$TOLLGATE" run -c "$OUT/upstream.toml" >"$OUT/upstream.log" 2>&1 &
    PIDS+=($!)
    UPSTREAM_URL="http://127.0.0.1:$UP_PORT/demo/mail"
    wait_http "http://127.0.0.1:$UP_PORT/healthz"
    ;;
  *) die "UPSTREAM must be nginx, tollgate or auto" ;;
esac

# --- tollgate: benches/bench-gateway.toml on other ports, with a SQLite store ------------
# write_config TTL: the same gateway, access tokens living TTL.
write_config() {
  cat >"$OUT/soak.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
internal_listen = "127.0.0.1:$INTERNAL"

[oauth]
issuer = "http://127.0.0.1:$PORT"
store = "sqlite:$OUT/soak.db"
access_token_ttl = "$1"

[oauth.scopes]
bench = "Benchmark"

[[clients]]
id = "$CLIENT_ID"
name = "Soak load generator"
secret_hash = "$CLIENT_HASH"
grant_types = ["client_credentials"]
scopes = ["bench"]

[log]
access = "off"                       # millions of lines over a soak; the peers log nothing either

[verify]
source = "local"
cache_ttl = "30s"
negative_cache_ttl = "5s"

[[routes]]
name = "soak"
path_prefix = "/"
upstream = "$UPSTREAM_URL"
auth = "bearer"
scopes = ["bench"]
EOF
}

TG_PID=
start_tollgate() {
  TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-1} "${CPU0[@]}" "$TOLLGATE" run -c "$OUT/soak.toml" \
    >>"$OUT/tollgate.log" 2>&1 &
  TG_PID=$!
  PIDS+=("$TG_PID")
  wait_http "http://127.0.0.1:$INTERNAL/healthz"
}
stop_tollgate() {
  kill "$TG_PID"
  wait "$TG_PID" 2>/dev/null || true
}

# issue N FILE: N client_credentials tokens into FILE.
issue() {
  local i token
  : >"$2"
  for ((i = 0; i < $1; i++)); do
    token=$(curl -fs --max-time 5 -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials \
      "http://127.0.0.1:$PORT/oauth/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [[ -n $token ]] || die "no token from /oauth/token (see $OUT/tollgate.log)"
    echo "$token" >>"$2"
  done
}

rm -f "$OUT"/soak.db*
# Expired tokens: issued by this same gateway and store, with a one-second lifetime.
write_config 1s
start_tollgate
issue "$TOKENS" "$OUT/expired.txt"
stop_tollgate
sleep 2
# The gateway under test: the same store, tokens for an hour.
write_config 1h
start_tollgate
issue "$TOKENS" "$OUT/valid.txt"

URL="http://127.0.0.1:$PORT/soak"
check_status() { # check_status TOKEN WANT
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$URL")
  [[ $got == "$2" ]] || die "sanity: expected $2, got $got (see $OUT/tollgate.log)"
}
check_status "$(head -1 "$OUT/valid.txt")" 200
check_status "$(head -1 "$OUT/expired.txt")" 401
check_status "never-issued-token" 401
echo "soak: tollgate pid $TG_PID, upstream $UPSTREAM at $UPSTREAM_URL, output in $OUT"

run_wrk() { # run_wrk SECONDS RATE OUTFILE
  "${CPU1[@]}" wrk -t "$CONNS" -c "$CONNS" -d "${1}s" --timeout 5s -s benches/soak.lua "$URL" \
    -- "$OUT/valid.txt" "$OUT/expired.txt" "$2" "$MIX" "$CONNS" >"$3"
}
field() { awk -v k="$2" '$1 == "SOAK" && $2 == k { print $3 }' "$1"; }

# --- peak, then the paced run -------------------------------------------------------------
run_wrk "$PEAK_SECONDS" 0 "$OUT/peak.txt"
peak=$(awk -v r="$(field "$OUT/peak.txt" requests)" -v us="$(field "$OUT/peak.txt" duration_us)" \
  'BEGIN { printf "%d", r / (us / 1e6) }')
rate=$(awk -v p="$peak" -v l="$LOAD" 'BEGIN { printf "%d", p * l }')
echo "soak: peak $peak req/s over ${PEAK_SECONDS}s with $CONNS connections; running at $rate req/s for ${DURATION}s"

CSV="$OUT/samples.csv"
echo "elapsed_s,rss_kb,fds,threads" >"$CSV"
sample() {
  local rss threads fds
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$TG_PID/status")
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$TG_PID/status")
  fds=$(find "/proc/$TG_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
  echo "$1,$rss,$fds,$threads" >>"$CSV"
}
# Not through run_wrk: in the background a function is a subshell, and $! must be wrk's PID.
"${CPU1[@]}" wrk -t "$CONNS" -c "$CONNS" -d "${DURATION}s" --timeout 5s -s benches/soak.lua "$URL" \
  -- "$OUT/valid.txt" "$OUT/expired.txt" "$rate" "$MIX" "$CONNS" >"$OUT/soak.txt" &
WRK_PID=$!
PIDS+=("$WRK_PID")
start=$SECONDS
sample 0
# The last sample is taken while wrk still runs (after it, its connections are gone).
for ((t = SAMPLE; t < DURATION; t += SAMPLE)); do
  sleep $((start + t - SECONDS > 0 ? start + t - SECONDS : 0))
  kill -0 "$TG_PID" 2>/dev/null || die "tollgate exited during the soak (see $OUT/tollgate.log)"
  sample "$t"
done
wait "$WRK_PID" || die "wrk failed (see $OUT/soak.txt)"

# --- report ---------------------------------------------------------------------------------
warm=$(awk -F, -v w="$WARMUP" 'NR > 1 && $1 >= w { print; exit }' "$CSV")
end=$(tail -1 "$CSV")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }'; }
within() { awk -v a="$1" -v b="$2" 'BEGIN { d = (b - a) / a; exit !(d <= 0.10 && d >= -0.10) }'; }
IFS=, read -r warm_t warm_rss warm_fds _ <<<"$warm"
IFS=, read -r end_t end_rss end_fds _ <<<"$end"
valid_bad=$(awk '$1 == "SOAK" && $2 == "status" && $3 == "valid" && $4 !~ /^2/ { n += $5 } END { print n + 0 }' "$OUT/soak.txt")
socket_errors=$(field "$OUT/soak.txt" socket_errors)
achieved=$(awk -v r="$(field "$OUT/soak.txt" requests)" -v us="$(field "$OUT/soak.txt" duration_us)" \
  'BEGIN { printf "%d", r / (us / 1e6) }')
{
  echo "soak of $(date -u +%FT%TZ): $TOLLGATE, upstream $UPSTREAM, $CONNS connections, mix valid,invalid,expired = $MIX"
  echo "peak:   $peak req/s (${PEAK_SECONDS}s unpaced)"
  echo "target: $rate req/s (LOAD=$LOAD), achieved $achieved req/s over ${DURATION}s;" \
    "p50 $(field "$OUT/soak.txt" latency_p50_us) us, p99 $(field "$OUT/soak.txt" latency_p99_us) us"
  echo "RSS:    ${warm_rss} kB at ${warm_t}s (after warm-up) -> ${end_rss} kB at ${end_t}s ($(pct "$warm_rss" "$end_rss")%)"
  echo "fds:    ${warm_fds} at ${warm_t}s -> ${end_fds} at ${end_t}s ($(pct "$warm_fds" "$end_fds")%)"
  echo "statuses by token kind:"
  awk '$1 == "SOAK" && $2 == "status" { printf "  %-8s %s %10d\n", $3, $4, $5 }' "$OUT/soak.txt"
  echo "sent:   $(awk '$1 == "SOAK" && $2 == "sent" { printf "%s%s %d", s, $3, $4; s = ", " }' "$OUT/soak.txt")"
  echo "non-2xx for valid tokens: $valid_bad; socket errors and timeouts: $socket_errors"
  echo "samples: $CSV"
} | tee "$OUT/summary.txt"

status=0
[[ $valid_bad == 0 ]] || { echo "FAIL: valid tokens got non-2xx answers"; status=1; }
[[ $socket_errors == 0 ]] || { echo "FAIL: socket errors or timeouts"; status=1; }
within "$warm_rss" "$end_rss" || { echo "FAIL: RSS moved more than 10%"; status=1; }
within "$warm_fds" "$end_fds" || { echo "FAIL: open fds moved more than 10%"; status=1; }
exit $status
