//! Listeners: TLS with ALPN, the internal listener (health, readiness, metrics), and
//! graceful drain on shutdown.

use crate::common::{self, remote_verify, route, tls, Introspector, TestGateway, Upstream};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[tokio::test]
async fn tls_listener_speaks_http2_by_alpn_and_http1_when_asked() {
    let up = Upstream::echo().await;
    let (gw, cert) = tls::spawn_gateway(&route("api", "/api", &up.url(), "auth = \"none\"")).await;
    for (http1_only, want) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let r = tls::client(&cert, &gw, http1_only)
            .get(tls::url(&gw, "/api/x"))
            .send()
            .await
            .expect("TLS request");
        assert_eq!(r.version(), want);
        assert_eq!(r.status(), 200);
        let echo: Value = r.json().await.expect("json");
        assert_eq!(echo["path"], "/api/x");
        assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["https"]);
    }
    // The plain listener keeps working next to it, and says so to the upstream.
    let echo: Value = common::client()
        .get(gw.url("/api/x"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(common::echoed(&echo, "x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn tls_listener_refuses_a_client_that_does_not_trust_its_certificate() {
    let up = Upstream::echo().await;
    let (gw, _cert) = tls::spawn_gateway(&route("api", "/", &up.url(), "auth = \"none\"")).await;
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_cert = tls::write_self_signed(other_dir.path());
    let result = tls::client(&other_cert, &gw, false)
        .get(tls::url(&gw, "/x"))
        .send()
        .await;
    assert!(result.is_err(), "handshake with an unknown certificate");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn health_and_readiness_answer_200_on_the_internal_listener_only() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route("api", "/api", &up.url(), "auth = \"none\"")).await;
    let c = common::client();
    for path in ["/healthz", "/readyz"] {
        let r = c.get(gw.internal_url(path)).send().await.expect("sent");
        assert_eq!(r.status(), 200, "{path}");
        // Not served on the public listener (no route matches there).
        let r = c.get(gw.url(path)).send().await.expect("sent");
        assert_eq!(r.status(), 404, "{path} on the public listener");
    }
    let r = c.get(gw.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status(), 404, "/metrics on the public listener");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn metrics_expose_every_contract_family_that_has_samples() {
    let up = Upstream::echo().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active("good-token", "alice", "email");
    let gw = TestGateway::spawn(&format!(
        "{}{}",
        remote_verify(&introspector, ""),
        route(
            "mail",
            "/api/mail",
            &up.url(),
            "auth = \"bearer\"\nscopes = [\"email\"]"
        )
    ))
    .await;
    // Kept alive, so one public connection is open while the metrics are read.
    let c = common::client();
    for _ in 0..2 {
        let r = c
            .get(gw.url("/api/mail"))
            .bearer_auth("good-token")
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200);
    }
    let r = c
        .get(gw.internal_url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().expect("ASCII");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let m = r.text().await.expect("text");
    for family in [
        "tollgate_requests_total",
        "tollgate_request_duration_seconds",
        "tollgate_upstream_duration_seconds",
        "tollgate_guard_decisions_total",
        "tollgate_verify_cache_total",
        "tollgate_introspection_duration_seconds",
        "tollgate_open_connections",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} ")),
            "{family} missing from:\n{m}"
        );
    }
    let open = common::sample(&m, "tollgate_open_connections", &[("listener", "public")]);
    assert!(
        open.is_some_and(|n| n >= 1.0),
        "public connections: {open:?}"
    );
    let requests = common::sample(
        &m,
        "tollgate_request_duration_seconds_count",
        &[("route", "mail")],
    );
    assert_eq!(requests, Some(2.0));
    let upstream = common::sample(
        &m,
        "tollgate_upstream_duration_seconds_count",
        &[("route", "mail")],
    );
    assert_eq!(upstream, Some(2.0));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let up = Upstream::echo().await;
    let mut gw = TestGateway::spawn(&route("api", "/", &up.url(), "auth = \"none\"")).await;
    let (public, internal) = (gw.public, gw.internal);
    let in_flight = tokio::spawn(common::client().get(gw.url("/slow")).send());
    up.wait_for_hits(1).await;

    let running = gw.running.take().expect("running");
    let shutdown = tokio::spawn(running.shutdown());
    // Wait until the listener is closed: connections are then refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(public).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 10 s after shutdown"
        );
        tokio::task::yield_now().await;
    }
    assert!(
        !in_flight.is_finished(),
        "the request waits for the upstream"
    );
    assert!(!shutdown.is_finished(), "shutdown waits for the request");

    up.release();
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request finishes")
        .expect("request task")
        .expect("answered, not cut off");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("whole body");
    assert_eq!(echo["path"], "/slow");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown completes once the request is done")
        .expect("shutdown task");
    assert!(TcpStream::connect(public).await.is_err());
    assert!(TcpStream::connect(internal).await.is_err());
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    let up = Upstream::echo().await;
    let (mut gw, cert) = tls::spawn_gateway(&route("api", "/", &up.url(), "auth = \"none\"")).await;
    // Idle keep-alive connections over HTTP/1.1, HTTP/2, TLS (HTTP/2 on hyper, HTTP/1.1 on
    // the fast lane), one that has sent nothing yet, and one that has not even started its
    // TLS handshake.
    let h1 = common::client();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let over_tls = tls::client(&cert, &gw, false);
    let http1_over_tls = tls::client(&cert, &gw, true);
    for (client, url) in [
        (&h1, gw.url("/x")),
        (&h2, gw.url("/x")),
        (&over_tls, tls::url(&gw, "/x")),
        (&http1_over_tls, tls::url(&gw, "/x")),
    ] {
        let r = client.get(url).send().await.expect("sent");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    let _silent = TcpStream::connect(gw.public).await.expect("connect");
    let _silent_tls = TcpStream::connect(gw.tls.expect("tls"))
        .await
        .expect("connect");
    // Both silent connections must have been accepted, not merely queued.
    let metrics = gw.running.as_ref().expect("running").metrics.clone();
    let open = |listener| {
        common::count(
            &metrics.render(),
            "tollgate_open_connections",
            &[("listener", listener)],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while (open("public"), open("tls")) != (3, 3) {
        assert!(
            Instant::now() < deadline,
            "connections not accepted in 10 s"
        );
        tokio::task::yield_now().await;
    }

    let started = Instant::now();
    let running = gw.running.take().expect("running");
    tokio::time::timeout(Duration::from_secs(20), running.shutdown())
        .await
        .expect("shutdown completes");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}
