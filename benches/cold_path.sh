#!/usr/bin/env bash
# Cold path: what a guarded request costs tollgate when its token is not in the verification
# cache, against the warm path, in CPU per request. Method and figures: benches/README.md
# ("Cold path").
#
#   benches/cold_path.sh                  # MODE=local: SQLite store, a new token every request vs one token
#   MODE=remote benches/cold_path.sh      # remote verifier (RFC 7662 stub), nothing cached, coalescing
#
# As the shared harness (../shared/bench/run.sh) measures: every server (tollgate, the
# upstream nginx, the verify stub, the nginx peers) pinned to CPU 0 with one worker, wrk on
# CPU 1; each row a discarded warm-up run then a measured run; CPU time per request of each
# process from /proc/<pid>/stat (utime + stime) around the measured run; rows alternate
# order from round to round. It runs its own servers on its own ports (the harness's verify
# stub answers an empty 200, which is no RFC 7662 answer, and the harness needs caddy).
#
# MODE=local: tollgate with a SQLite store and the local verifier. TOKENS tokens are issued
#   first (client_credentials through wrk and benches/issue_tokens.lua); then rows `cold`
#   (benches/cold_path.lua: every request a token never sent before: a cache miss, one
#   SQLite lookup, one cache insert) and `warm` (the same script, always one token: a hit).
# MODE=remote: tollgate with `[verify] source = "remote"` against an nginx stub answering
#   `{"active":true,...}` to any request; rows `direct` (the upstream alone), `nginx-proxy`
#   (proxy_pass, no check), `nginx-auth` (auth_request to the same stub on every request, no
#   cache), `tollgate-cold` (`cache_ttl = "0s"`: no answer is reused once it is in; requests
#   for the token that arrive while a call is in flight share it) and `tollgate-warm`
#   (`cache_ttl = "30s"`). All load one token, as the harness's rows do.
#
# Knobs (env):
#   TOLLGATE   the binary under test                      target/release/tollgate
#   MODE       local | remote                             local
#   DURATION   seconds of each measured run               5 (local), 8 (remote)
#   WARMUP     seconds of each discarded warm-up run      1 (local), 2 (remote)
#   ROUNDS     times the rows are run, order alternated   3 (local), 2 (remote)
#   CONNS      wrk connections                            64
#   THREADS    wrk threads                                1
#   TOKENS     tokens issued before the local rows        400000 (at least; issued in ISSUE_CHUNK s runs)
#   TOKENS_FROM  run directory of an earlier local run: its store and tokens are copied
#              instead of issuing new ones (A/B runs of two binaries on the same file);
#              its tokens live 24 h (access_token_ttl below) from when they were issued
#   ISSUE_CHUNK  seconds of each issuing run              5
#   CACHE_CAPACITY  [verify] cache_capacity (local)       tollgate's default
#   CACHE_TTL  [verify] cache_ttl (local)                 30s
#   PIN        1: servers on CPU 0, wrk on CPU 1          1
#   OUT        run directory                              bench/run/cold-<mode>-<timestamp>
#   PORT_BASE  first of eight loopback ports              18250
# Exit status: 0 when every measured request was answered 2xx; 1 otherwise; 2 when the
# set-up failed.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

TOLLGATE=${TOLLGATE:-target/release/tollgate}
MODE=${MODE:-local}
if [[ $MODE == local ]]; then d=5 w=1 r=3; else d=8 w=2 r=2; fi
DURATION=${DURATION:-$d}
WARMUP=${WARMUP:-$w}
ROUNDS=${ROUNDS:-$r}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
TOKENS=${TOKENS:-400000}
TOKENS_FROM=${TOKENS_FROM:-}
ISSUE_CHUNK=${ISSUE_CHUNK:-5}
CACHE_CAPACITY=${CACHE_CAPACITY:-}
CACHE_TTL=${CACHE_TTL:-30s}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-18250}
OUT=${OUT:-bench/run/cold-$MODE-$(date +%Y%m%d-%H%M%S)}

UP_PORT=$PORT_BASE              # the upstream API (nginx)
VERIFY_PORT=$((PORT_BASE + 1))  # the RFC 7662 stub (remote)
PROXY_PORT=$((PORT_BASE + 2))   # nginx-proxy (remote)
AUTH_PORT=$((PORT_BASE + 3))    # nginx-auth (remote)
TG_PORT=$((PORT_BASE + 4))      # tollgate (local), tollgate-cold (remote): public, internal = +1
TG2_PORT=$((PORT_BASE + 6))     # tollgate-warm (remote): public, internal = +1

# The bench client of benches/bench-gateway.toml (a BENCH secret, see that file).
CLIENT_ID=bench
CLIENT_SECRET=tollgate-bench-secret-2f9c7e1a
CLIENT_HASH=sha256:0a4a06dfa83806510e5bf0805cdd8e23ce19f09f38da626ddca60c942026e4ce

die() { echo "cold_path: $*" >&2; exit 2; }
note() { echo "cold_path: $*" >&2; }
[[ -x $TOLLGATE ]] || die "no binary at $TOLLGATE (cargo build --release, or set TOLLGATE)"
for t in nginx wrk curl setsid pgrep; do command -v $t >/dev/null || die "'$t' is not installed"; done
[[ $MODE == local || $MODE == remote ]] || die "MODE must be local or remote"
HZ=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
CPU0=() CPU1=()
if [[ $PIN == 1 ]]; then
  command -v taskset >/dev/null || die "PIN=1 needs taskset"
  CPU0=(taskset -c 0) CPU1=(taskset -c 1)
fi

# --- servers: each in its own session (its PID is its process group), stopped by PID -----
declare -A SPID=()
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# start NAME CMD...: started pinned to CPU 0 in a session of its own.
start() {
  local name=$1
  shift
  setsid "${CPU0[@]}" "$@" >"$OUT/$name.log" 2>&1 </dev/null &
  SPID[$name]=$!
  PIDS+=($!)
}
# shellcheck source=benches/lib.sh
source benches/lib.sh   # wait_http (the script runs from the project root)
# members NAME: the PIDs of a server's process group (nginx: master and worker).
members() { pgrep -g "${SPID[$1]}" | tr '\n' ' ' || true; }
# ticks PID...: CPU clock ticks (utime + stime + reaped children's) used so far, as run.sh.
ticks() {
  local t=0 p s f
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -ra f <<<"${s##*) }"
    t=$((t + f[11] + f[12] + f[13] + f[14]))
  done
  echo "$t"
}
group_ticks() { if [[ -n ${SPID[${1:-none}]:-} ]]; then ticks $(members "$1"); else echo 0; fi; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/${SPID[$1]}/status"; }
# counter INTERNAL_PORT RESULT: tollgate_verify_cache_total{result=RESULT}.
counter() {
  curl -fs --max-time 5 "http://127.0.0.1:$1/metrics" |
    awk -v r="result=\"$2\"" '$1 ~ /^tollgate_verify_cache_total/ && index($1, r) { v = $2 } END { print v + 0 }'
}

nginx_conf() { # nginx_conf NAME HTTP_BLOCK: a one-worker nginx with that http{} content
  mkdir -p "$OUT/$1"
  cat >"$OUT/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
$2
}
EOF
  start "$1" nginx -p "$OUT/$1" -c "$OUT/$1/nginx.conf" -e "$OUT/$1/error.log"
}

# --- the upstream: as the harness's, a constant JSON body from memory ----------------------
nginx_conf upstream "  server {
    listen 127.0.0.1:$UP_PORT backlog=4096;
    location / { default_type application/json; return 200 '{\"ok\":true}'; }
  }"
wait_http "http://127.0.0.1:$UP_PORT/"

# write_tollgate NAME PUBLIC_PORT STORE VERIFY_SECTION
write_tollgate() {
  cat >"$OUT/$1.toml" <<EOF
[server]
listen = "127.0.0.1:$2"
internal_listen = "127.0.0.1:$(($2 + 1))"

[log]
access = "off"

[oauth]
issuer = "http://127.0.0.1:$2"
store = "$3"
access_token_ttl = "24h"

[oauth.scopes]
bench = "Benchmark"

[[clients]]
id = "$CLIENT_ID"
name = "Cold-path bench"
secret_hash = "$CLIENT_HASH"
grant_types = ["client_credentials"]
scopes = ["bench"]

$4

[[routes]]
name = "bench"
path_prefix = "/"
upstream = "http://127.0.0.1:$UP_PORT"
auth = "bearer"
scopes = ["bench"]
EOF
  "$TOLLGATE" check -c "$OUT/$1.toml" >"$OUT/$1.check" 2>&1 || die "$OUT/$1.toml: $(cat "$OUT/$1.check")"
  start "$1" env TOKIO_WORKER_THREADS=1 "$TOLLGATE" run -c "$OUT/$1.toml"
  wait_http "http://127.0.0.1:$(($2 + 1))/healthz"
}

# --- measurement --------------------------------------------------------------------------
# wrk output -> "rps requests p50_ms p99_ms errors" (as run.sh's parse_wrk)
parse_wrk() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v + 0 }
    /^ +50%/            { p50 = ms($2) }
    /^ +99%/            { p99 = ms($2) }
    / requests in /     { reqs = $1 }
    /^Requests\/sec:/   { rps = $2 }
    /Non-2xx or 3xx/    { err += $NF }
    /Socket errors:/    { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%.0f %d %.3f %.3f %d\n", rps, reqs, p50, p99, err }'
}
per_req() { awk -v d="$1" -v n="$2" -v hz="$HZ" 'BEGIN { printf "%.1f", n ? d / hz * 1e6 / n : 0 }'; }

declare -A R=()       # R[metric,round,row]
declare -A URL=() PROXY=() INTERNAL=()
LOAD_ARGS=()
OFFSET=1              # local: token lines consumed so far (line 1 is the warm token)
EXHAUSTED=0
FAILED=0

# load_args ROW: the wrk arguments for ROW's next run, into LOAD_ARGS.
load_args() {
  case $1 in
    cold)
      ((OFFSET < issued)) || die "out of fresh tokens after $OFFSET (raise TOKENS)"
      LOAD_ARGS=(-s benches/cold_path.lua -- once "$OUT/tokens" "$OFFSET" "$THREADS")
      ;;
    warm) LOAD_ARGS=(-s benches/cold_path.lua -- same "$OUT/tokens" 0 "$THREADS") ;;
    *) LOAD_ARGS=(-H "Authorization: Bearer $REMOTE_TOKEN") ;;
  esac
}
# consumed ROW FILE: after a run, moves OFFSET past the tokens a `cold` run used.
consumed() {
  [[ $1 == cold ]] || return 0
  local used ran_out
  used=$(awk '$1 == "USED" { print $2 }' "$2")
  ran_out=$(awk '$1 == "EXHAUSTED" { print $2 }' "$2")
  [[ -n $used ]] || die "no USED line from wrk in $2"
  OFFSET=$((OFFSET + used))
  if ((ran_out > 0)); then
    EXHAUSTED=1
    note "WARNING: the cold row ran out of tokens ($OFFSET used; raise TOKENS): its window was shorter"
  fi
}

# measure ROUND ROW: a warm-up run (discarded), then the measured run with CPU counters.
measure() {
  local round=$1 row=$2 k="$1,$2" url=${URL[$2]} proxy=${PROXY[$2]:-} raw
  raw="$OUT/raw/$row-round$round"
  load_args "$row"
  "${CPU1[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" "${LOAD_ARGS[@]}" >"$raw-warmup.txt" 2>&1 ||
    die "wrk warm-up against $row failed (see $raw-warmup.txt)"
  consumed "$row" "$raw-warmup.txt"
  load_args "$row"
  local p0 p1 u0 u1 v0 v1 m0=0 m1=0 c0=0 c1=0
  if [[ -n $proxy && -n ${INTERNAL[$row]:-} ]]; then
    m0=$(counter "${INTERNAL[$row]}" miss)
    c0=$(counter "${INTERNAL[$row]}" coalesced)
  fi
  p0=$(group_ticks "$proxy") u0=$(group_ticks upstream) v0=$(group_ticks verify)
  "${CPU1[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" "${LOAD_ARGS[@]}" >"$raw.txt" 2>&1 ||
    die "wrk against $row failed (see $raw.txt)"
  p1=$(group_ticks "$proxy") u1=$(group_ticks upstream) v1=$(group_ticks verify)
  if [[ -n $proxy && -n ${INTERNAL[$row]:-} ]]; then
    m1=$(counter "${INTERNAL[$row]}" miss)
    c1=$(counter "${INTERNAL[$row]}" coalesced)
  fi
  consumed "$row" "$raw.txt"
  local name
  for name in "${!SPID[@]}"; do
    kill -0 "${SPID[$name]}" 2>/dev/null || die "$name (pid ${SPID[$name]}) is gone, during the $row row (logs in $OUT)"
  done
  local rps reqs p50 p99 err
  read -r rps reqs p50 p99 err <<<"$(parse_wrk <"$raw.txt")"
  ((reqs > 0)) || die "wrk against $row completed no requests (see $raw.txt)"
  R[rps,$k]=$rps R[reqs,$k]=$reqs R[p50,$k]=$p50 R[p99,$k]=$p99 R[err,$k]=$err
  R[pus,$k]=$(per_req $((p1 - p0)) "$reqs")
  [[ -n $proxy ]] || R[pus,$k]=0
  R[uus,$k]=$(per_req $((u1 - u0)) "$reqs")
  R[vus,$k]=$(per_req $((v1 - v0)) "$reqs")
  R[miss,$k]=$((m1 - m0)) R[coal,$k]=$((c1 - c0))
  if ((err > 0)); then
    FAILED=1
    note "WARNING: $row had $err errors or non-2xx answers in round $round"
  fi
  sleep 1
}

print_round() { # print_round ROUND ROWS...
  local round=$1 row k
  shift
  printf '%-14s %8s %8s %8s %9s %9s %6s %9s %8s %8s %9s %10s %6s\n' row req/s p50_ms p99_ms requests \
    proxy_us up_us verify_us proxy/up p+v/up misses coalesced errors
  for row in "$@"; do
    k="$round,$row"
    awk -v row="$row" -v rps="${R[rps,$k]}" -v p50="${R[p50,$k]}" -v p99="${R[p99,$k]}" -v n="${R[reqs,$k]}" \
      -v pu="${R[pus,$k]}" -v uu="${R[uus,$k]}" -v vu="${R[vus,$k]}" -v mi="${R[miss,$k]}" \
      -v co="${R[coal,$k]}" -v err="${R[err,$k]}" 'BEGIN {
      printf "%-14s %8d %8.3f %8.3f %9d %9.1f %6.1f %9.1f %8s %8s %9d %10d %6d\n", row, rps, p50, p99, n,
        pu, uu, vu, (uu > 0) ? sprintf("%.2f", pu / uu) : "-", (uu > 0) ? sprintf("%.2f", (pu + vu) / uu) : "-",
        mi, co, err }'
  done
}

print_mean() { # print_mean ROWS...: means over the rounds (ratios: means of the per-round ratios)
  local row r vals
  printf '%-14s %8s %9s %6s %9s %8s %8s %6s\n' row req/s proxy_us up_us verify_us proxy/up p+v/up errors
  for row in "$@"; do
    vals=
    for ((r = 1; r <= ROUNDS; r++)); do
      vals+="${R[rps,$r,$row]} ${R[pus,$r,$row]} ${R[uus,$r,$row]} ${R[vus,$r,$row]} ${R[err,$r,$row]} "
    done
    awk -v row="$row" -v n="$ROUNDS" -v vals="$vals" 'BEGIN {
      split(vals, v, " ")
      for (r = 0; r < n; r++) {
        q += v[r*5+1]; pu += v[r*5+2]; uu += v[r*5+3]; vu += v[r*5+4]; er += v[r*5+5]
        if (v[r*5+3] > 0) { pr += v[r*5+2] / v[r*5+3]; pvr += (v[r*5+2] + v[r*5+4]) / v[r*5+3] }
      }
      printf "%-14s %8.0f %9.1f %6.1f %9.1f %8.2f %8.2f %6d\n", row, q / n, pu / n, uu / n, vu / n, pr / n, pvr / n, er }'
  done
}

run_rounds() { # run_rounds ROWS...: every row once a round, the order reversed every other round
  local r i
  local -a rows=("$@") order
  for ((r = 1; r <= ROUNDS; r++)); do
    order=()
    if ((r % 2)); then order=("${rows[@]}"); else for ((i = ${#rows[@]} - 1; i >= 0; i--)); do order+=("${rows[i]}"); done; fi
    for row in "${order[@]}"; do
      note "round $r: $row"
      measure "$r" "$row"
    done
    echo
    echo "round $r (run order: ${order[*]})"
    print_round "$r" "${rows[@]}"
  done
  echo
  echo "mean of $ROUNDS rounds"
  print_mean "${rows[@]}"
}

echo "== cold path, MODE=$MODE: $(date -u +%FT%TZ), $TOLLGATE =="
echo "wrk -t$THREADS -c$CONNS -d${DURATION}s (warm-up ${WARMUP}s discarded), $ROUNDS rounds, order alternated;" \
  "$([[ $PIN == 1 ]] && echo "servers on CPU 0, wrk on CPU 1" || echo "no pinning"); TOKIO_WORKER_THREADS=1"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); run directory $OUT"

if [[ $MODE == local ]]; then
  # --- local: SQLite store, TOKENS tokens, then cold and warm ------------------------------
  if [[ -n $TOKENS_FROM ]]; then
    [[ -f $TOKENS_FROM/tokens.db && -f $TOKENS_FROM/tokens ]] || die "no tokens.db and tokens in $TOKENS_FROM"
    for f in "$TOKENS_FROM"/tokens.db*; do cp "$f" "$OUT/"; done
    cp "$TOKENS_FROM/tokens" "$OUT/tokens"
  fi
  write_tollgate tollgate "$TG_PORT" "sqlite:$OUT/tokens.db" "[verify]
source = \"local\"
cache_ttl = \"$CACHE_TTL\"
negative_cache_ttl = \"5s\"
${CACHE_CAPACITY:+cache_capacity = $CACHE_CAPACITY}"
  URL[cold]="http://127.0.0.1:$TG_PORT/" URL[warm]="http://127.0.0.1:$TG_PORT/"
  PROXY[cold]=tollgate PROXY[warm]=tollgate
  INTERNAL[cold]=$((TG_PORT + 1)) INTERNAL[warm]=$((TG_PORT + 1))

  [[ -z $TOKENS_FROM ]] && note "issuing $TOKENS tokens"
  # wrk always runs its whole duration: issue in chunks of ISSUE_CHUNK seconds until there
  # are enough (at most TOKENS/200 chunks: 1,000 tokens a second would be very slow).
  basic=$(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)
  t0=$(date +%s%N) issued=0
  [[ -n $TOKENS_FROM ]] && issued=$(wc -l <"$OUT/tokens") TOKENS=0
  for ((chunk = 0; issued < TOKENS && chunk < TOKENS / 200 / ISSUE_CHUNK + 1; chunk++)); do
    "${CPU1[@]}" wrk -t"$THREADS" -c32 -d"${ISSUE_CHUNK}s" -s benches/issue_tokens.lua \
      "http://127.0.0.1:$TG_PORT/oauth/token" -- "$OUT/issued" "$basic" >"$OUT/raw/issue-$chunk.txt" 2>&1 ||
      die "issuing tokens failed (see $OUT/raw/issue-$chunk.txt)"
    issued=$(cat "$OUT"/issued.* | wc -l)
  done
  t1=$(date +%s%N)
  [[ -n $TOKENS_FROM ]] || cat "$OUT"/issued.* >"$OUT/tokens"
  ((issued >= TOKENS)) || die "only $issued tokens were issued (see $OUT/raw/issue-*.txt, $OUT/tollgate.log)"
  if [[ -n $TOKENS_FROM ]]; then
    echo "tokens:       $issued copied from $TOKENS_FROM; store $(du -ch "$OUT/tokens.db"* | tail -n1 | cut -f1) on disk"
  else
    echo "issued:       $issued tokens in $(awk -v n="$((t1 - t0))" 'BEGIN { printf "%.1f", n / 1e9 }') s" \
      "(client_credentials, wrk -c32 on CPU 1); store $(du -ch "$OUT/tokens.db"* | tail -n1 | cut -f1) on disk"
  fi
  sleep 2
  first=$(head -n1 "$OUT/tokens")
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $first" "${URL[warm]}")
  none=$(curl -s -o /dev/null -w '%{http_code}' "${URL[warm]}")
  [[ $ok == 200 && $none == 401 ]] ||
    die "sanity: an issued token got $ok (want 200), none got $none (want 401)${TOKENS_FROM:+; tokens copied from $TOKENS_FROM may have expired (24 h)}"
  echo "sanity:       issued token 200, no token 401"
  rss0=$(rss_kb tollgate)
  run_rounds cold warm
  echo
  echo "cold / warm, per round: tollgate CPU per request, and proxy/up (which cancels CPU-speed drift)"
  for ((r = 1; r <= ROUNDS; r++)); do
    awk -v r="$r" -v c="${R[pus,$r,cold]}" -v w="${R[pus,$r,warm]}" -v cu="${R[uus,$r,cold]}" -v wu="${R[uus,$r,warm]}" \
      'BEGIN { printf "  round %d: %.1f / %.1f us = %.2f;  proxy/up %.2f / %.2f = %.2f\n", r, c, w, c / w, c / cu, w / wu, (c / cu) / (w / wu) }'
  done
  echo "tokens:       $OFFSET of $issued lines used$([[ $EXHAUSTED == 1 ]] && echo " (RAN OUT: raise TOKENS)")"
  echo "tollgate RSS: $rss0 kB after issuing -> $(rss_kb tollgate) kB after the rounds;" \
    "cache: $(counter $((TG_PORT + 1)) miss) misses, $(counter $((TG_PORT + 1)) hit) hits in all"
else
  # --- remote: an RFC 7662 stub, nginx peers, tollgate cold and warm ----------------------
  # The stub answers every request (tollgate's POST and nginx's auth subrequest) alike.
  nginx_conf verify "  server {
    listen 127.0.0.1:$VERIFY_PORT backlog=4096;
    location / { default_type application/json; return 200 '{\"active\":true,\"client_id\":\"bench\",\"sub\":\"bench\",\"scope\":\"bench\",\"token_type\":\"Bearer\"}'; }
  }"
  wait_http "http://127.0.0.1:$VERIFY_PORT/"
  # As the harness's peers/nginx-proxy.conf and nginx-auth.conf, on this script's ports.
  nginx_conf nginx-proxy "  upstream api { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$PROXY_PORT backlog=4096;
    location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
  nginx_conf nginx-auth "  upstream api { server 127.0.0.1:$UP_PORT; keepalive 128; keepalive_requests 1000000; }
  upstream verify { server 127.0.0.1:$VERIFY_PORT; keepalive 128; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$AUTH_PORT backlog=4096;
    location / {
      auth_request /_verify;
      proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\";
    }
    location = /_verify {
      internal;
      proxy_pass http://verify/verify; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_pass_request_body off; proxy_set_header Content-Length \"\";
    }
  }"
  remote() { # remote TTL: the [verify] section, answers kept TTL
    echo "[verify]
source = \"remote\"
url = \"http://127.0.0.1:$VERIFY_PORT/verify\"
client_id = \"gateway\"
client_secret = \"the-stub-checks-nothing\"
cache_ttl = \"$1\"
negative_cache_ttl = \"5s\""
  }
  write_tollgate tollgate-cold "$TG_PORT" memory "$(remote 0s)"
  write_tollgate tollgate-warm "$TG2_PORT" memory "$(remote 30s)"
  wait_http "http://127.0.0.1:$PROXY_PORT/"
  REMOTE_TOKEN=q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9oNiKfHxWjQ   # 43 characters, as tollgate's own
  URL[direct]="http://127.0.0.1:$UP_PORT/" URL[nginx-proxy]="http://127.0.0.1:$PROXY_PORT/"
  URL[nginx-auth]="http://127.0.0.1:$AUTH_PORT/"
  URL[tollgate-cold]="http://127.0.0.1:$TG_PORT/" URL[tollgate-warm]="http://127.0.0.1:$TG2_PORT/"
  PROXY[nginx-proxy]=nginx-proxy PROXY[nginx-auth]=nginx-auth
  PROXY[tollgate-cold]=tollgate-cold PROXY[tollgate-warm]=tollgate-warm
  INTERNAL[tollgate-cold]=$((TG_PORT + 1)) INTERNAL[tollgate-warm]=$((TG2_PORT + 1))
  for row in direct nginx-proxy nginx-auth tollgate-cold tollgate-warm; do
    c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REMOTE_TOKEN" "${URL[$row]}")
    [[ $c == 200 ]] || die "sanity: $row answered $c with a token (want 200; logs in $OUT)"
  done
  for row in tollgate-cold tollgate-warm; do
    c=$(curl -s -o /dev/null -w '%{http_code}' "${URL[$row]}")
    [[ $c == 401 ]] || die "sanity: $row answered $c without a token (want 401)"
  done
  echo "sanity:       every row 200 with the token; tollgate 401 without"
  echo "verify stub:  nginx, 200 {\"active\":true,...} to any request (verify_us = its CPU per request)"
  run_rounds direct nginx-proxy nginx-auth tollgate-cold tollgate-warm
  echo
  echo "tollgate-cold: misses = introspection calls made, coalesced = requests that shared one in flight"
fi
exit "$FAILED"
