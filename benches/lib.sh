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

# self_signed_cert DIR: a throw-away P-256 certificate for localhost, DIR/cert.pem and
# DIR/key.pem (valid one day).
self_signed_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
}

# upstream_nginx_conf PORT: on stdout, the config of the upstream the per-request counters
# proxy to: nginx, one worker in the foreground, answering every request 200 {"ok":true} on
# 127.0.0.1:PORT, keep-alive connections never recycled.
upstream_nginx_conf() {
  cat <<CONF
worker_processes 1;
daemon off;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$1;
        location / { return 200 '{"ok":true}'; }
    }
}
CONF
}
