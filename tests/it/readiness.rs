//! `/readyz` (draining, store unavailable, ok), `tollgate_store_up`, the process and build
//! metrics, series created at zero before any traffic, none for what can never move, and
//! `/verify` counted under `route="_verify"`.

use crate::common::redis::OwnRedis;
use crate::common::slapd::free_port;
use crate::common::{self, route, sample, TestGateway, Upstream};
use serde_json::Value;
use std::time::{Duration, Instant};

const OAUTH: &str = r#"
[oauth]
store = "memory"
[oauth.scopes]
email = "Read your email"

[[clients]]
id = "pocket"
redirect_uris = ["https://app.example/cb"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["email"]
"#;

/// `GET /readyz`: the status code and the body's `status`.
async fn readyz(gw: &TestGateway) -> (u16, String) {
    let r = common::client()
        .get(gw.internal_url("/readyz"))
        .send()
        .await
        .expect("readyz answered");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("readyz JSON");
    (
        status,
        body["status"].as_str().unwrap_or_default().to_string(),
    )
}

/// Polls `/readyz` (at most 10 s) until it answers `want`.
async fn wait_for_readyz(gw: &TestGateway, want: (u16, &str)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = readyz(gw).await;
        if (got.0, got.1.as_str()) == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_is_ok_and_metrics_have_process_build_info_and_zeros_before_any_traffic() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&format!(
        "{OAUTH}{}{}",
        route("mail", "/api/mail", &up.url(), "auth = \"bearer\""),
        route("open", "/open", &up.url(), "auth = \"none\"")
    ))
    .await;
    assert_eq!(readyz(&gw).await, (200, "ok".to_string()));
    let m = gw.metrics().await;

    for family in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
        assert!(
            m.contains(&format!("\n{family} ")),
            "{family} missing:\n{m}"
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(&m, "tollgate_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "tollgate_store_up", &[]), Some(1.0));

    // Label values that can move exist at zero before anything happened.
    for outcome in [
        "allowed",
        "missing",
        "invalid",
        "insufficient_scope",
        "verifier_error",
    ] {
        let labels = [("route", "mail"), ("outcome", outcome)];
        assert_eq!(
            sample(&m, "tollgate_guard_decisions_total", &labels),
            Some(0.0),
            "{outcome}"
        );
    }
    for result in ["success", "failure", "throttled", "unavailable"] {
        assert_eq!(
            sample(&m, "tollgate_logins_total", &[("result", result)]),
            Some(0.0),
            "{result}"
        );
    }
    for result in ["hit", "miss", "negative_hit", "coalesced"] {
        let got = sample(&m, "tollgate_verify_cache_total", &[("result", result)]);
        assert_eq!(got, Some(0.0), "{result}");
    }
    for grant in ["authorization_code", "refresh_token"] {
        let got = sample(&m, "tollgate_tokens_issued_total", &[("grant_type", grant)]);
        assert_eq!(got, Some(0.0), "{grant}");
    }
    // No client may use it, so it can never move.
    assert!(!m.contains("grant_type=\"client_credentials\""), "{m}");
    for route in ["mail", "open"] {
        let got = sample(
            &m,
            "tollgate_upstream_duration_seconds_count",
            &[("route", route)],
        );
        assert_eq!(got, Some(0.0), "{route}");
    }

    // Nothing for what can never move: a guard on pseudo-routes and open routes, an
    // upstream for pseudo-routes.
    for route in ["_none", "_oauth", "_verify", "open"] {
        let label = format!("route=\"{route}\"");
        let guard = m
            .lines()
            .filter(|l| l.starts_with("tollgate_guard_decisions_total") && l.contains(&label));
        assert_eq!(guard.count(), 0, "guard series for {route}:\n{m}");
    }
    for route in ["_none", "_oauth", "_verify"] {
        let label = format!("route=\"{route}\"");
        let upstream = m
            .lines()
            .filter(|l| l.starts_with("tollgate_upstream_duration") && l.contains(&label));
        assert_eq!(upstream.count(), 0, "upstream series for {route}:\n{m}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn verify_calls_are_counted_under_the_verify_route() {
    let gw = TestGateway::spawn(OAUTH).await;
    let before = gw.metrics().await;
    let count = [("route", "_verify")];
    assert_eq!(
        sample(&before, "tollgate_request_duration_seconds_count", &count),
        Some(0.0)
    );
    // No client authentication: 401, counted all the same.
    let r = common::client()
        .post(gw.internal_url("/verify"))
        .form(&[("token", "whatever")])
        .send()
        .await
        .expect("verify answered");
    let status = r.status();
    assert_eq!(status, 401);
    let m = gw.metrics().await;
    let labels = [("route", "_verify"), ("status", status.as_str())];
    assert_eq!(
        sample(&m, "tollgate_requests_total", &labels),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "tollgate_request_duration_seconds_count", &count),
        Some(1.0)
    );
}

#[tokio::test]
async fn readyz_answers_503_draining_while_shutdown_waits_for_an_in_flight_request() {
    let up = Upstream::echo().await;
    let mut gw = TestGateway::spawn(&route("api", "/", &up.url(), "auth = \"none\"")).await;
    assert_eq!(readyz(&gw).await, (200, "ok".to_string()));
    let in_flight = tokio::spawn(common::client().get(gw.url("/slow")).send());
    up.wait_for_hits(1).await;

    let running = gw.running.take().expect("running");
    let shutdown = tokio::spawn(running.shutdown());
    // The upstream holds the request, so the drain lasts until it is released.
    wait_for_readyz(&gw, (503, "draining")).await;
    assert!(!shutdown.is_finished(), "shutdown waits for the request");
    let health = common::client()
        .get(gw.internal_url("/healthz"))
        .send()
        .await
        .expect("healthz answered while draining");
    assert_eq!(health.status(), 200);

    up.release();
    let r = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request finishes")
        .expect("request task")
        .expect("answered");
    assert_eq!(r.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown completes once the request is done")
        .expect("shutdown task");
    assert!(tokio::net::TcpStream::connect(gw.internal).await.is_err());
}

#[tokio::test]
async fn readyz_answers_503_store_unavailable_while_redis_is_down_and_ok_once_it_is_back() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let gw = TestGateway::spawn(&OAUTH.replace(
        "store = \"memory\"",
        &format!("store = \"redis://127.0.0.1:{port}/0\""),
    ))
    .await;
    assert_eq!(readyz(&gw).await, (200, "ok".to_string()));
    assert_eq!(
        sample(&gw.metrics().await, "tollgate_store_up", &[]),
        Some(1.0)
    );

    redis.stop();
    wait_for_readyz(&gw, (503, "store_unavailable")).await;
    assert_eq!(
        sample(&gw.metrics().await, "tollgate_store_up", &[]),
        Some(0.0)
    );
    let health = common::client()
        .get(gw.internal_url("/healthz"))
        .send()
        .await
        .expect("healthz answered");
    assert_eq!(health.status(), 200, "liveness does not follow the store");

    let _redis = OwnRedis::start(port);
    wait_for_readyz(&gw, (200, "ok")).await;
    assert_eq!(
        sample(&gw.metrics().await, "tollgate_store_up", &[]),
        Some(1.0)
    );
}
