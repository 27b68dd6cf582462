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

# nginx_proxy_conf UP_PORT CERT_DIR LISTEN...: on stdout, an nginx reverse proxy with the shared
# harness's peers/nginx-proxy.conf settings (one worker, no master process, in the foreground; a
# keep-alive pool of 128 to 127.0.0.1:UP_PORT; access log off), listening on each LISTEN: `PORT`
# for plain HTTP/1.1, `PORT ssl http2` for HTTP/2 over TLS with CERT_DIR's cert.pem and key.pem.
nginx_proxy_conf() {
  local up=$1 certs=$2 listen
  shift 2
  cat <<CONF
worker_processes 1;
daemon off;
master_process off;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server_tokens off;
    upstream api {
        server 127.0.0.1:$up;
        keepalive 128;
        keepalive_requests 1000000;
    }
    server {
CONF
  for listen in "$@"; do
    echo "        listen 127.0.0.1:$listen backlog=4096;"
  done
  cat <<CONF
        ssl_certificate     $certs/cert.pem;
        ssl_certificate_key $certs/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
}

# gateway_head GW_PORT IN_PORT TLS_PORT: on stdout, the start of a bench's gateway.toml: the
# public, internal and TLS listeners (cert.pem and key.pem beside the file) and an in-memory
# store; the caller adds [log], clients and routes.
gateway_head() {
  cat <<CONF
[server]
listen = "127.0.0.1:$1"
internal_listen = "127.0.0.1:$2"

[server.tls]
listen = "127.0.0.1:$3"
cert = "cert.pem"
key = "key.pem"

[oauth]
issuer = "http://127.0.0.1:$1"
store = "memory"
CONF
}

# gateway_open_conf GW_PORT IN_PORT TLS_PORT UP_PORT: on stdout, a whole gateway.toml: gateway_head,
# the access log off, and one open route `/` to 127.0.0.1:UP_PORT.
gateway_open_conf() {
  gateway_head "$1" "$2" "$3"
  cat <<CONF

[log]
access = "off"

[[routes]]
name = "up"
path_prefix = "/"
upstream = "http://127.0.0.1:$4"
auth = "none"
CONF
}
