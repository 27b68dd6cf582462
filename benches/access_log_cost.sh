#!/usr/bin/env bash
# The access log's own cost in the shared harness: tollgate's guarded route run with
# `[log] access = "off"` and with a JSON file, alternated (off, on, off, on, ...), each run
# with nginx `proxy_pass` beside it. Compare tollgate's proxy/up between the runs.
#
#   benches/access_log_cost.sh [path/to/tollgate] [OUTDIR]
#
# Defaults: target/release/tollgate, /tmp/access-log-cost. Knobs: PAIRS [2] (off/on pairs),
# ROUNDS [4], and every knob of ../shared/bench/run.sh. Needs what that harness needs.
# The access log goes to OUTDIR/access.log (removed before each run; its line count is
# printed, to show every request was logged).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$(realpath "${1:-$ROOT/target/release/tollgate}")
OUT=${2:-/tmp/access-log-cost}
HARNESS=${HARNESS:-$ROOT/../shared/bench/run.sh}
mkdir -p "$OUT"
cp "$ROOT/benches/bench-gateway.toml" "$OUT/off.toml"
sed -e "s|^access = \"off\".*|access = \"$OUT/access.log\"|" "$OUT/off.toml" > "$OUT/on.toml"
grep -q "^access = \"$OUT/access.log\"" "$OUT/on.toml" || { echo "no [log] access line to replace" >&2; exit 1; }

# gawk reserves the name `load`, which run.sh uses; mawk does not.
if awk --version 2>/dev/null | grep -q GNU && command -v mawk >/dev/null; then
  mkdir -p "$OUT/awk" && ln -sf "$(command -v mawk)" "$OUT/awk/awk" && PATH=$OUT/awk:$PATH
fi
export PEERS=${PEERS:-direct nginx-proxy} H2=${H2:-0} ROUNDS=${ROUNDS:-4} GATEWAY_AUTH=1
export GATEWAY_TOKEN_CMD='curl -s -u bench:tollgate-bench-secret-2f9c7e1a -d grant_type=client_credentials http://127.0.0.1:18110/oauth/token | sed -E "s/.*\"access_token\":\"([^\"]+)\".*/\1/"'
for i in $(seq "${PAIRS:-2}"); do
  for c in off on; do
    rm -f "$OUT/access.log"
    GATEWAY_NAME=tollgate-$c GATEWAY_CMD="$BIN run -c $OUT/$c.toml" \
      bash "$HARNESS" > "$OUT/$c-$i.txt" 2> "$OUT/$c-$i.err"
    lines=$( [[ -f $OUT/access.log ]] && wc -l < "$OUT/access.log" || echo 0)
    echo "$c-$i: $(grep -E "^tollgate-$c " "$OUT/$c-$i.txt" | tail -1 | awk '{print "proxy/up", $10}') (mean of the rounds; access log lines: $lines)"
  done
done
