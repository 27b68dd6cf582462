# tollgate as a container image: a Rust build stage, then a small Debian runtime.
#   docker build -t tollgate .
#   docker run -p 8080:8080 -v tollgate-data:/data tollgate
#   docker stop -t 40 <container>     # see the note on STOPSIGNAL below
# Not built in tollgate's CI: that machine has no container engine (see README "Deploy").

FROM rust:1-slim-bookworm AS build
# A C compiler for the bundled SQLite (rust:slim has one; this is a no-op there).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tollgate

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin tollgate \
 && mkdir -p /data /etc/tollgate \
 && chown tollgate:tollgate /data \
 && chmod 0700 /data
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
COPY deploy/gateway.docker.toml /etc/tollgate/gateway.toml
# Refuse to build an image whose shipped config `run` would refuse.
RUN tollgate check -c /etc/tollgate/gateway.toml
USER tollgate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 9090
# SIGTERM: stop accepting, let in-flight requests finish for up to 30 s, exit 0. Docker
# kills after 10 s by default, so give `docker stop -t` (compose: stop_grace_period,
# Kubernetes: terminationGracePeriodSeconds) more than 35 s (30 s drain + 5 s for the internal listener), e.g. 40.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tollgate"]
CMD ["run", "-c", "/etc/tollgate/gateway.toml"]
