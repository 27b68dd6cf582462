//! Several tollgate instances sharing one Redis store act as one authorization server
//! (issue 9): what one issues the others honour, a code is redeemed once across them, and
//! a revocation at one is refused at the others within a second although their caches
//! would keep the answer for a minute.

use crate::common::metric;
use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, TestStore, MAIL_APP, REPORTS, USER,
};
use std::time::{Duration, Instant};

/// Two instances, A and B, on one Redis prefix, caching answers for 60 s.
async fn two_instances() -> (AuthServer, AuthServer) {
    let config = AuthConfig::default()
        .on(TestStore::Redis)
        .verify("cache_ttl = \"60s\"");
    let a = config.clone().spawn().await;
    let b = config.spawn().await;
    (a, b)
}

/// How long `s` keeps accepting `token` (polled every 5 ms); panics past `limit`.
async fn refused_after(s: &AuthServer, token: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        let (status, body) = s.call("/api/mail/inbox", token).await;
        if status == 401 {
            return since.elapsed();
        }
        assert_eq!(status, 200, "{body}");
        assert!(since.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_token_revoked_at_one_instance_is_refused_at_another_within_a_second() {
    let (a, b) = two_instances().await;
    let tokens = a.tokens("email").await;
    let access = tokens.access_token();
    // B honours what A issued, and caches its answer (for 60 s).
    assert_eq!(b.subject_seen_upstream(access).await, USER);
    assert_eq!(b.subject_seen_upstream(access).await, USER);
    assert_eq!(
        b.counter("tollgate_verify_cache_total", "result", "hit")
            .await,
        1,
        "B answered from its cache"
    );

    let revoked = a.revoke(MAIL_APP, access).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    let answered = Instant::now();
    let (status, _) = a.call("/api/mail/inbox", access).await;
    assert_eq!(status, 401, "at once where it was revoked");
    let lag = refused_after(&b, access, answered, Duration::from_secs(1)).await;
    eprintln!("revocation reached B after {lag:?}");

    let (at_a, at_b) = (a.gw.metrics().await, b.gw.metrics().await);
    let revocations = |text: &str, source: &str| {
        metric(
            text,
            &format!("tollgate_revocations_total{{source=\"{source}\"}}"),
        )
    };
    assert_eq!(revocations(&at_a, "local"), Some(1.0), "{at_a}");
    assert_eq!(
        revocations(&at_a, "stream"),
        Some(0.0),
        "A skips its own entry"
    );
    assert_eq!(revocations(&at_b, "stream"), Some(1.0), "{at_b}");
    assert_eq!(
        metric(&at_b, "tollgate_revocation_lag_seconds_count"),
        Some(1.0)
    );
    assert!(metric(&at_b, "tollgate_revocation_lag_seconds_sum").is_some_and(|s| s < 1.0));
    assert_eq!(
        metric(&at_b, "tollgate_revocation_stream_up"),
        Some(1.0),
        "{at_b}"
    );
}

#[tokio::test]
async fn refresh_reuse_at_one_instance_revokes_the_grant_at_every_instance() {
    let (a, b) = two_instances().await;
    let first = a.tokens("email").await;
    // Rotated at B: the refresh token A issued is good there, and single-use everywhere.
    let second = b.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(b.subject_seen_upstream(second.access_token()).await, USER);

    // The old refresh token again, at A: the whole grant dies, at B too.
    a.refresh(MAIL_APP, first.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    let answered = Instant::now();
    refused_after(&b, second.access_token(), answered, Duration::from_secs(1)).await;
    b.refresh(MAIL_APP, second.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_redeemed_at_one_instance_cannot_be_redeemed_at_another() {
    let (a, b) = two_instances().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let code = Browser::for_server(&a).code(&a, &request).await;
    let first = b.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(
        first.status, 200,
        "a code made at A is redeemed at B: {}",
        first.json
    );
    assert_eq!(a.subject_seen_upstream(first.access_token()).await, USER);
    assert_eq!(b.subject_seen_upstream(first.access_token()).await, USER);
    a.exchange(MAIL_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    // The replay revoked what the first redemption issued, at both instances.
    refused_after(
        &a,
        first.access_token(),
        Instant::now(),
        Duration::from_secs(1),
    )
    .await;
    refused_after(
        &b,
        first.access_token(),
        Instant::now(),
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test]
async fn each_of_200_cached_tokens_revoked_at_one_instance_is_refused_at_another_within_a_second() {
    let (a, b) = two_instances().await;
    let mut tokens = Vec::new();
    for _ in 0..200 {
        let answer = a
            .token(REPORTS, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let token = answer.access_token().to_string();
        assert_eq!(
            b.subject_seen_upstream(&token).await,
            REPORTS.id,
            "cached at B"
        );
        tokens.push(token);
    }
    let mut lags = Vec::new();
    for token in &tokens {
        let revoked = a.revoke(REPORTS, token).await;
        assert_eq!(revoked.status, 200, "{}", revoked.json);
        lags.push(refused_after(&b, token, Instant::now(), Duration::from_secs(1)).await);
    }
    lags.sort();
    eprintln!(
        "revocation lag A -> B over {} tokens: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1]
    );
}
