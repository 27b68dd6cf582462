#!/usr/bin/env bash
# Builds the cargo-fuzz targets once and runs each (or those named) for a bounded time or
# number of executions; see fuzz/README.md. Needs the nightly toolchain and cargo-fuzz.
#
#   fuzz/run.sh                           # every target, FUZZ_SECONDS each
#   FUZZ_RUNS=10000000 fuzz/run.sh route_path
#
# Env: FUZZ_SECONDS per target (15); FUZZ_RUNS executions per target (instead of seconds);
# FUZZ_BUDGET seconds for the whole script, build included: FUZZ_SECONDS shrinks to fit
# (never below 3); FUZZ_PROFILE `release` (default: fastest executions) or `dev` (builds in
# a third of the time, runs several times slower: what a short CI run wants). Each target starts from its seeds in corpus/<target>/ and keeps what it
# finds in work/<target>/ (not committed); a crash leaves its input in
# artifacts/<target>/ and fails the script. Logs: work/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"
started=$SECONDS

mapfile -t all < <(cargo +nightly fuzz list)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

# No sanitizer: the code under test forbids `unsafe`, so ASan would find nothing Rust's
# own checks (bounds, overflow: see Cargo.toml) do not, at half the speed.
case ${FUZZ_PROFILE:-release} in
  release) build=(--release) out=release ;;
  # cargo-fuzz builds with one codegen unit unless told otherwise: slow to build, and
  # pointless without optimisation.
  dev) build=(--dev --codegen-units 16) out=debug ;;
  *) echo "FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac
mkdir -p work
# The whole build log stays in work/build.log; a failed build shows its end, errors included.
if ! cargo +nightly fuzz build -s none "${build[@]}" >work/build.log 2>&1; then
  tail -60 work/build.log
  echo "fuzz: the build failed (work/build.log)" >&2
  exit 1
fi
tail -3 work/build.log
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=${CARGO_TARGET_DIR:-$PWD/target}/$triple/$out

seconds=${FUZZ_SECONDS:-15}
if [[ -n ${FUZZ_BUDGET:-} ]]; then
  left=$((FUZZ_BUDGET - (SECONDS - started)))
  fit=$((left / ${#targets[@]}))
  ((fit < seconds)) && seconds=$((fit > 3 ? fit : 3))
fi

for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  if [[ -n ${FUZZ_RUNS:-} ]]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$seconds"); fi
  echo "fuzz: $t (${limit[*]})"
  if ! "$bin_dir/$t" "${limit[@]}" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" "work/$t" "corpus/$t" >"work/$t.log" 2>&1; then
    tail -40 "work/$t.log"
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "work/$t.log" | sed 's/^/  /'
done
echo "fuzz: ${#targets[@]} targets passed in $((SECONDS - started))s"
