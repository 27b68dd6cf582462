# Helpers shared by the bench scripts; sourced (from the project root) after the script has defined `die` and `OUT`
# (where its servers' logs go).

# wait_http URL: up to 10 s for a 200.
wait_http() {
  local i
  for ((i = 0; i < 100; i++)); do
    curl -fso /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "nothing answers $1 (logs in $OUT)"
}
