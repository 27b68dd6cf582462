//! The bearer guard with a remote verifier: RFC 6750 challenges, identity headers, the
//! verification cache (hits, negative entries, coalescing, expiry) and failing closed.

use crate::common::{
    self, count, echoed, now, remote_verify, route, Introspector, TestGateway, Upstream,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHALLENGE: &str = r#"Bearer realm="tollgate""#;
const CHALLENGE_INVALID: &str = r#"Bearer realm="tollgate", error="invalid_token""#;

/// An introspector, one upstream, and a gateway with two bearer routes:
/// `mail` (/api/mail, scope `email`) and `send` (/api/send, scope `email.send`),
/// plus an open route `open` (/open).
struct Setup {
    introspector: Introspector,
    up: Upstream,
    gw: TestGateway,
    client: reqwest::Client,
}

impl Setup {
    async fn new(delay: Duration, verify_extra: &str) -> Setup {
        let introspector = Introspector::spawn(delay).await;
        let up = Upstream::echo().await;
        let gw = TestGateway::spawn(&format!(
            "{}{}{}{}",
            remote_verify(&introspector, verify_extra),
            route(
                "mail",
                "/api/mail",
                &up.url(),
                "auth = \"bearer\"\nscopes = [\"email\"]"
            ),
            route(
                "send",
                "/api/send",
                &up.url(),
                "auth = \"bearer\"\nscopes = [\"email.send\"]"
            ),
            route("open", "/open", &up.url(), "auth = \"none\""),
        ))
        .await;
        Setup {
            introspector,
            up,
            gw,
            client: common::client(),
        }
    }

    async fn get(&self, path: &str, authorization: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.gw.url(path));
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        req.send().await.expect("sent")
    }

    async fn bearer(&self, path: &str, token: &str) -> StatusCode {
        self.get(path, Some(&format!("Bearer {token}")))
            .await
            .status()
    }
}

fn challenge(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| common::without_resource_metadata(v.to_str().expect("ASCII challenge")))
        .collect()
}

#[tokio::test]
async fn request_without_token_is_401_with_a_bare_bearer_challenge() {
    let s = Setup::new(Duration::ZERO, "").await;
    let r = s.get("/api/mail/inbox", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), [CHALLENGE]);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("json");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(s.up.hits(), 0);
    assert_eq!(s.introspector.calls(), 0);
}

#[tokio::test]
async fn malformed_authorization_header_is_401_without_asking_the_verifier() {
    let s = Setup::new(Duration::ZERO, "").await;
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer two words",
        "Bearer a,b",
        "Bearer \"q\"",
    ] {
        let r = s.get("/api/mail", Some(value)).await;
        assert_eq!(r.status(), 401, "{value:?}");
        assert_eq!(challenge(&r), [CHALLENGE], "{value:?}");
    }
    assert_eq!(s.up.hits(), 0);
    assert_eq!(s.introspector.calls(), 0);
}

#[tokio::test]
async fn other_authorization_schemes_are_401_like_no_token() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("good-token", "alice", "email");
    for value in [
        "Basic Z29vZC10b2tlbjp4",
        "Token good-token",
        "MAC good-token",
    ] {
        let r = s.get("/api/mail", Some(value)).await;
        assert_eq!(r.status(), 401, "{value:?}");
        assert_eq!(challenge(&r), [CHALLENGE], "{value:?}");
    }
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn token_in_the_query_string_is_not_accepted() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("good-token", "alice", "email");
    let r = s.get("/api/mail?access_token=good-token", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), [CHALLENGE]);
    assert_eq!(s.introspector.calls(), 0);
    assert_eq!(s.up.hits(), 0);
    // The same token in the header works, so the refusal was about where it was sent.
    assert_eq!(s.bearer("/api/mail", "good-token").await, 200);
}

#[tokio::test]
async fn unknown_or_inactive_token_is_401_invalid_token() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector
        .insert("revoked", json!({"active": false, "sub": "alice"}));
    s.introspector.insert(
        "expired",
        json!({"active": true, "sub": "alice", "client_id": "mail-app", "scope": "email", "exp": now() - 10}),
    );
    for token in ["never-issued", "revoked", "expired"] {
        let r = s.get("/api/mail", Some(&format!("Bearer {token}"))).await;
        assert_eq!(r.status(), 401, "{token}");
        assert_eq!(challenge(&r), [CHALLENGE_INVALID], "{token}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"], "invalid_token", "{token}");
    }
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn token_without_the_route_scope_is_403_insufficient_scope() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("reader", "alice", "email profile");
    let r = s.get("/api/send", Some("Bearer reader")).await;
    assert_eq!(r.status(), 403);
    let challenges = challenge(&r);
    assert_eq!(challenges.len(), 1);
    assert!(
        challenges[0].starts_with(r#"Bearer realm="tollgate""#),
        "{challenges:?}"
    );
    assert!(
        challenges[0].contains(r#"error="insufficient_scope""#),
        "{challenges:?}"
    );
    assert!(
        challenges[0].contains(r#"scope="email.send""#),
        "{challenges:?}"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn active_token_reaches_upstream_with_identity_headers_and_no_spoofed_ones() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector
        .active("good-token", "alice", "email email.send");
    let r = s
        .client
        .get(s.gw.url("/api/mail/inbox"))
        .bearer_auth("good-token")
        .header("x-auth-subject", "root")
        .header("x-auth-client-id", "admin-console")
        .header("x-auth-scope", "admin")
        .header("X-Auth-Subject", "root-again")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("json");
    assert_eq!(echo["path"], "/api/mail/inbox");
    assert_eq!(echoed(&echo, "x-auth-subject"), ["alice"]);
    assert_eq!(echoed(&echo, "x-auth-client-id"), ["mail-app"]);
    assert_eq!(echoed(&echo, "x-auth-scope"), ["email email.send"]);
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed_on_open_routes_too() {
    let s = Setup::new(Duration::ZERO, "").await;
    let r = s
        .client
        .get(s.gw.url("/open/x"))
        .header("x-auth-subject", "root")
        .header("x-auth-client-id", "admin-console")
        .header("x-auth-scope", "admin")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("json");
    for name in ["x-auth-subject", "x-auth-client-id", "x-auth-scope"] {
        assert!(echoed(&echo, name).is_empty(), "{name} reached: {echo}");
    }
}

#[tokio::test]
async fn sequential_requests_with_one_token_make_one_introspection_call() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("good-token", "alice", "email");
    for i in 0..10 {
        assert_eq!(s.bearer("/api/mail", "good-token").await, 200, "#{i}");
    }
    assert_eq!(s.introspector.calls(), 1);
    assert_eq!(s.up.hits(), 10);
}

#[tokio::test]
async fn unknown_token_is_negatively_cached() {
    let s = Setup::new(Duration::ZERO, "").await;
    for i in 0..2 {
        assert_eq!(s.bearer("/api/mail", "never-issued").await, 401, "#{i}");
    }
    assert_eq!(s.introspector.calls(), 1);
    let m = s.gw.metrics().await;
    assert_eq!(
        count(&m, "tollgate_verify_cache_total", &[("result", "miss")]),
        1
    );
    assert_eq!(
        count(
            &m,
            "tollgate_verify_cache_total",
            &[("result", "negative_hit")]
        ),
        1
    );
}

#[tokio::test]
async fn concurrent_misses_for_one_token_make_one_introspection_call() {
    // The delay keeps the first call in flight while the others arrive.
    let s = Setup::new(Duration::from_millis(200), "").await;
    s.introspector.active("fresh-token", "alice", "email");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let client = s.client.clone();
        let url = s.gw.url("/api/mail");
        requests.spawn(async move {
            client
                .get(url)
                .bearer_auth("fresh-token")
                .send()
                .await
                .expect("sent")
                .status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = requests.join_next().await {
        statuses.push(status.expect("request task"));
    }
    assert_eq!(statuses.len(), 100);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.introspector.calls(), 1);
    let m = s.gw.metrics().await;
    let cache = |result| count(&m, "tollgate_verify_cache_total", &[("result", result)]);
    assert_eq!(cache("miss"), 1);
    assert_eq!(cache("coalesced") + cache("hit"), 99);
    assert!(cache("coalesced") >= 1, "some requests waited on the call");
}

#[tokio::test]
async fn scopes_are_checked_on_every_request_even_when_cached() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("reader", "alice", "email");
    assert_eq!(s.bearer("/api/mail", "reader").await, 200);
    assert_eq!(s.bearer("/api/send", "reader").await, 403);
    assert_eq!(s.bearer("/api/mail", "reader").await, 200);
    assert_eq!(s.introspector.calls(), 1);
    assert_eq!(s.up.hits(), 2);
}

#[tokio::test]
async fn introspection_server_error_is_503_and_not_cached() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("good-token", "alice", "email");
    s.introspector.fail(true);
    for i in 0..2 {
        let r = s.get("/api/mail", Some("Bearer good-token")).await;
        assert_eq!(r.status(), 503, "#{i}");
        assert!(r.headers().get("www-authenticate").is_none());
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    assert_eq!(s.introspector.calls(), 2, "errors are not cached");
    assert_eq!(s.up.hits(), 0);
    s.introspector.fail(false);
    assert_eq!(s.bearer("/api/mail", "good-token").await, 200);
}

#[tokio::test]
async fn stopped_introspection_server_is_503_never_401_or_200() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("known", "alice", "email");
    s.introspector.active("other", "bob", "email");
    // A first call leaves a kept-alive connection that stop() must close too.
    assert_eq!(s.bearer("/api/mail", "known").await, 200);
    s.introspector.server.stop();
    for token in ["other", "never-issued"] {
        let r = s.get("/api/mail", Some(&format!("Bearer {token}"))).await;
        assert_eq!(r.status(), 503, "{token}");
    }
    assert_eq!(s.up.hits(), 1);
    let m = s.gw.metrics().await;
    assert_eq!(
        count(
            &m,
            "tollgate_guard_decisions_total",
            &[("route", "mail"), ("outcome", "verifier_error")]
        ),
        2
    );
}

#[tokio::test]
async fn introspection_slower_than_the_verify_timeout_is_503() {
    // The introspector holds every answer for 3 s; the gateway waits at most 300 ms.
    let s = Setup::new(Duration::from_secs(3), "timeout = \"300ms\"").await;
    s.introspector.active("slow", "alice", "email");
    let started = Instant::now();
    assert_eq!(s.bearer("/api/mail", "slow").await, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered before the introspector did"
    );
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn cached_token_is_refused_once_its_exp_has_passed() {
    let s = Setup::new(Duration::ZERO, "cache_ttl = \"30s\"").await;
    let exp = now() + 2;
    s.introspector.insert(
        "short-lived",
        json!({"active": true, "sub": "alice", "client_id": "mail-app", "scope": "email", "exp": exp}),
    );
    assert_eq!(s.bearer("/api/mail", "short-lived").await, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused_at = loop {
        assert!(
            Instant::now() < deadline,
            "still accepted 5 s after an exp 2 s away"
        );
        let sent_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        match s.bearer("/api/mail", "short-lived").await {
            StatusCode::OK => assert!(
                sent_at < Duration::from_secs(exp),
                "accepted a request sent at {sent_at:?}, after exp {exp}"
            ),
            StatusCode::UNAUTHORIZED => break sent_at,
            other => panic!("unexpected {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused_at >= Duration::from_secs(exp - 1));
    assert!(
        s.introspector.calls() >= 2,
        "the verifier was asked again after the entry expired"
    );
}

#[tokio::test]
async fn metrics_count_guard_decisions_cache_results_and_statuses() {
    let s = Setup::new(Duration::ZERO, "").await;
    s.introspector.active("reader", "alice", "email");
    assert_eq!(s.get("/api/mail", None).await.status(), 401); // missing
    assert_eq!(s.get("/api/mail", Some("Bearer a b")).await.status(), 401); // invalid
    assert_eq!(s.bearer("/api/mail", "never-issued").await, 401); // invalid, miss
    assert_eq!(s.bearer("/api/mail", "never-issued").await, 401); // invalid, negative_hit
    for _ in 0..3 {
        assert_eq!(s.bearer("/api/mail", "reader").await, 200); // allowed: 1 miss, 2 hits
    }
    assert_eq!(s.bearer("/api/send", "reader").await, 403); // insufficient_scope, hit
    s.introspector.fail(true);
    assert_eq!(s.bearer("/api/send", "fresh").await, 503); // verifier_error
    assert_eq!(s.get("/nowhere", None).await.status(), 404);

    let m = s.gw.metrics().await;
    let guard = |route, outcome| {
        count(
            &m,
            "tollgate_guard_decisions_total",
            &[("route", route), ("outcome", outcome)],
        )
    };
    assert_eq!(guard("mail", "missing"), 1);
    assert_eq!(guard("mail", "invalid"), 3);
    assert_eq!(guard("mail", "allowed"), 3);
    assert_eq!(guard("mail", "insufficient_scope"), 0);
    assert_eq!(guard("send", "insufficient_scope"), 1);
    assert_eq!(guard("send", "verifier_error"), 1);
    assert_eq!(guard("send", "allowed"), 0);

    let cache = |result| count(&m, "tollgate_verify_cache_total", &[("result", result)]);
    assert_eq!(cache("miss"), 2);
    assert_eq!(cache("hit"), 3);
    assert_eq!(cache("negative_hit"), 1);
    assert_eq!(cache("coalesced"), 0);

    let requests = |route, status| {
        count(
            &m,
            "tollgate_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("mail", "401"), 4);
    assert_eq!(requests("mail", "200"), 3);
    assert_eq!(requests("send", "403"), 1);
    assert_eq!(requests("send", "503"), 1);
    assert_eq!(requests("_none", "404"), 1);
    assert!(
        common::sample(
            &m,
            "tollgate_introspection_duration_seconds_count",
            &[("verifier", "remote")]
        )
        .is_some_and(|n| n >= 3.0),
        "introspection durations are observed"
    );
}
