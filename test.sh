#!/usr/bin/env bash
# tollgate's test command, the README's second command and what CI runs (.ci/run calls
# it). On a fresh Debian machine it installs what the tests need when it is missing, makes
# sure Redis answers on 127.0.0.1:6379, then checks formatting and lints and runs every test.
# Needs Rust (rustup or Debian's cargo) and, to install packages, root or sudo.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive

# Debian packages, each only when its program is missing:
#   slapd (slapd, slapadd): the LDAP tests run a real directory
#   chromium, chromium-driver: the browser test walks the login and consent pages
#   redis-server (and redis-cli): the shared-store tests
#   prometheus (promtool) and systemd (systemd-analyze): the deploy/ files are checked
#   gcc, libc6-dev: SQLite is compiled in
need=()
[[ -x /usr/sbin/slapd && -x /usr/sbin/slapadd ]] || need+=(slapd)
[[ -x /usr/bin/chromium ]] || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v cc >/dev/null || need+=(gcc libc6-dev)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]}"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Redis on 127.0.0.1:6379: use the one that answers, else start a throwaway one (no disk).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "test.sh: starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
