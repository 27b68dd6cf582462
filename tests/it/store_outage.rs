//! A Redis store that goes away (issue 9, item 4): `/oauth/*` answers 503 at once, not after
//! a connection timeout; `/readyz` reports it; the guard follows each route's
//! `when_store_down` (`serve_cached` within `[verify] stale_grace`, or `deny`); and all of it
//! recovers without restarting tollgate.

use crate::common::oauth::{AuthConfig, AuthServer, JsonAnswer, REPORTS};
use crate::common::process::Process;
use crate::common::redis::OwnRedis;
use crate::common::slapd::free_port;
use crate::common::{self, sample};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// A third route on the mail scope that refuses rather than serve an unverifiable answer.
const STRICT_ROUTE: &str = r#"
[[routes]]
name = "strict"
path_prefix = "/api/strict"
upstream = "http://127.0.0.1:9"
auth = "bearer"
scopes = ["email"]
when_store_down = "deny"
"#;

/// A server on its own redis-server (which the test can stop), answers re-checked after
/// 200 ms of stream silence and served stale for at most `grace`.
async fn server_on(redis_port: u16, grace: &str) -> AuthServer {
    let s = AuthConfig::default()
        .store(&format!("redis://127.0.0.1:{redis_port}/0"))
        .verify(&format!(
            "cache_ttl = \"60s\"\nmax_stale = \"200ms\"\nstale_grace = \"{grace}\""
        ));
    let up_url = common::Upstream::echo().await;
    let strict = STRICT_ROUTE.replace("http://127.0.0.1:9", &up_url.url());
    let dir = tempfile::tempdir().expect("temp dir");
    s.extra(&strict).spawn_in(dir, up_url).await
}

async fn client_credentials(s: &AuthServer) -> JsonAnswer {
    s.token(
        REPORTS,
        &[("grant_type", "client_credentials"), ("scope", "email")],
    )
    .await
}

async fn readyz(s: &AuthServer) -> u16 {
    common::client()
        .get(s.gw.internal_url("/readyz"))
        .send()
        .await
        .expect("readyz answered")
        .status()
        .as_u16()
}

/// Polls `probe` every 20 ms until it returns true; panics after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oauth_answers_503_at_once_while_redis_is_down_and_recovers_without_a_restart() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let s = server_on(port, "5m").await;
    let issued = client_credentials(&s).await;
    assert_eq!(issued.status, 200, "{}", issued.json);
    assert_eq!(readyz(&s).await, 200);

    redis.stop();
    // Every token request while Redis is away: 503 temporarily_unavailable with
    // Retry-After, each well under a second.
    for _ in 0..5 {
        let started = Instant::now();
        let refused = client_credentials(&s).await;
        let took = started.elapsed();
        refused.assert_error(503, "temporarily_unavailable");
        assert!(
            refused.header("retry-after").is_some(),
            "{:?}",
            refused.headers
        );
        assert!(took < Duration::from_millis(900), "answered after {took:?}");
    }
    within(Duration::from_secs(5), "/readyz 503", || async {
        readyz(&s).await == 503
    })
    .await;
    assert_eq!(
        sample(&s.gw.metrics().await, "tollgate_store_up", &[]),
        Some(0.0)
    );

    // The same port again (an empty Redis: what was issued before is gone).
    let _redis = OwnRedis::start(port);
    let back = within(Duration::from_secs(5), "token issued again", || async {
        client_credentials(&s).await.status == StatusCode::OK
    })
    .await;
    eprintln!("token endpoint answered 200 again {back:?} after Redis was back");
    within(Duration::from_secs(5), "/readyz 200", || async {
        readyz(&s).await == 200
    })
    .await;
}

#[tokio::test]
async fn while_redis_is_down_each_route_follows_its_when_store_down() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let s = server_on(port, "3s").await;
    let token = client_credentials(&s).await.access_token().to_string();
    // Cached on both routes (one cache entry per token), verified no earlier than this.
    let verified = Instant::now();
    assert_eq!(s.call("/api/mail/inbox", &token).await.0, 200);
    assert_eq!(s.call("/api/strict/x", &token).await.0, 200);

    redis.stop();
    let stopped = Instant::now();
    // `deny`: once the stream has been silent past max_stale (200 ms) the answer needs a
    // re-check that cannot happen, so 503.
    let denied = within(Duration::from_secs(2), "strict route 503", || async {
        s.call("/api/strict/x", &token).await.0 == 503
    })
    .await;
    eprintln!("deny route refused {denied:?} after Redis stopped");
    // `serve_cached`: the answer verified moments ago is still used...
    let (status, echo) = s.call("/api/mail/inbox", &token).await;
    assert!(verified.elapsed() < Duration::from_secs(3), "test too slow");
    assert_eq!(status, 200, "{echo}");
    // ... but a token never seen cannot be verified at all.
    let (status, _) = s.call("/api/mail/inbox", "never-seen-token").await;
    assert_eq!(status, 503);
    // ... and not past stale_grace (3 s after it was verified).
    within(
        Duration::from_secs(6),
        "serve_cached route 503 after stale_grace",
        || async { s.call("/api/mail/inbox", &token).await.0 == 503 },
    )
    .await;
    assert!(
        verified.elapsed() >= Duration::from_secs(3),
        "refused before stale_grace ended: {:?}",
        verified.elapsed()
    );
    let m = s.gw.metrics().await;
    for result in ["served", "refused"] {
        let n = sample(&m, "tollgate_verify_stale_total", &[("result", result)]);
        assert!(n.is_some_and(|n| n >= 1.0), "{result}: {n:?}");
    }
    assert!(stopped.elapsed() < Duration::from_secs(10));
}

/// An outage is logged as it starts and ends, not once per request: a real `tollgate run`
/// whose Redis goes away while requests keep coming writes a handful of warning lines, not
/// one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_not_per_request() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let up = common::Upstream::echo().await;
    let config = AuthConfig::default().store(&format!("redis://127.0.0.1:{port}/0"));
    let dir = tempfile::tempdir().expect("temp dir");
    let tollgate = Process::auth_server(dir.path(), &config, &up).await;
    let http = common::client();
    let secret = REPORTS.secret.expect("a confidential client");
    let token = |http: &reqwest::Client| {
        http.post(tollgate.url("/oauth/token"))
            .basic_auth(REPORTS.id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(token(&http).await.expect("answered").status(), 200);
    let before = tollgate.stderr().lines().count();

    redis.stop();
    for i in 0..60 {
        let answer = token(&http).await.expect("answered");
        assert_eq!(answer.status(), 503);
        let guarded = http
            .get(tollgate.url("/api/mail/inbox"))
            .bearer_auth(format!("never-seen-{i}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(guarded.status(), 503);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stderr = tollgate.stderr();
    let loud: Vec<&str> = stderr
        .lines()
        .skip(before)
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        loud.len() <= 6,
        "{} warning/error lines for 120 requests during one outage:\n{}",
        loud.len(),
        loud.join("\n")
    );
}
