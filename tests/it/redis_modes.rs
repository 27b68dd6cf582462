//! tollgate on Redis Sentinel and Redis Cluster (issue 9): instances sharing the store act
//! as one authorization server on these topologies too, and keep doing so through a
//! failover (Sentinel) and through slots moving between nodes (Cluster), without a restart.

use crate::common::metric;
use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, JsonAnswer, TestStore, MAIL_APP, REPORTS, USER,
};
use crate::common::redis::{OwnCluster, OwnSentinel};
use std::time::{Duration, Instant};

/// Two instances on `config`, caching answers for 60 s (so that a refusal can only come
/// from the revocation stream or the store).
async fn two_instances(config: &AuthConfig) -> (AuthServer, AuthServer) {
    let config = config.clone().verify("cache_ttl = \"60s\"");
    (config.clone().spawn().await, config.spawn().await)
}

/// A client_credentials access token issued at `s`.
async fn machine_token(s: &AuthServer) -> String {
    let answer = s
        .token(REPORTS, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.access_token().to_string()
}

/// Revokes `token` (of [`REPORTS`]) at `at` and asserts `elsewhere` refuses it within a
/// second; returns how long that took.
async fn revocation_reaches(at: &AuthServer, elsewhere: &AuthServer, token: &str) -> Duration {
    assert_eq!(elsewhere.subject_seen_upstream(token).await, REPORTS.id);
    let revoked = at.revoke(REPORTS, token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    elsewhere
        .refused_after(token, Instant::now(), Duration::from_secs(1))
        .await
}

#[tokio::test]
async fn on_sentinel_a_failover_is_followed_without_a_restart() {
    let sentinel = OwnSentinel::start();
    let config = AuthConfig::default().on_url(&sentinel.url(0));
    let (a, b) = two_instances(&config).await;
    let before = a.tokens("email").await;
    assert_eq!(b.subject_seen_upstream(before.access_token()).await, USER);
    let lag = revocation_reaches(&a, &b, &machine_token(&a).await).await;
    eprintln!("before the failover: revocation reached B after {lag:?}");

    // The failover waits for the sentinel (seconds): off the servers' runtime thread.
    let (sentinel, new_master) = tokio::task::spawn_blocking(move || {
        let port = sentinel.failover();
        (sentinel, port)
    })
    .await
    .expect("failover");
    assert_eq!(sentinel.named_master(), Some(new_master));
    works_again_after_a_failover(&config, &a, &b, &before).await;
}

#[tokio::test]
async fn on_sentinel_a_dead_master_is_replaced_without_a_restart() {
    let mut sentinel = OwnSentinel::start();
    let config = AuthConfig::default().on_url(&sentinel.url(0));
    let (a, b) = two_instances(&config).await;
    let before = a.tokens("email").await;
    assert_eq!(b.subject_seen_upstream(before.access_token()).await, USER);

    let old = sentinel.kill_master();
    // No master for a while (the sentinel waits a second before it acts): /oauth/* says so
    // at once.
    let asked = Instant::now();
    let answer = a
        .token(REPORTS, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(answer.status, 503, "{}", answer.json);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    eprintln!("without a master: 503 after {:?}", asked.elapsed());

    let sentinel = tokio::task::spawn_blocking(move || {
        sentinel.wait_for_new_master(old);
        sentinel
    })
    .await
    .expect("failover");
    assert_ne!(sentinel.named_master(), Some(old));
    works_again_after_a_failover(&config, &a, &b, &before).await;
}

/// After a failover, within ten seconds and without a restart: `a` and `b` issue tokens
/// again (each may answer 503 once or twice first: a call on a link that died with the old
/// master fails, and the next one finds the new master), what was issued `before` verifies
/// (at a fresh instance, so from the store) and its refresh token rotates, and revocations
/// travel between `a` and `b` both ways.
async fn works_again_after_a_failover(
    config: &AuthConfig,
    a: &AuthServer,
    b: &AuthServer,
    before: &JsonAnswer,
) {
    let failed_over = Instant::now();
    let mut tokens = Vec::new();
    for (name, s) in [("A", a), ("B", b)] {
        let token = loop {
            let answer = s
                .token(REPORTS, &[("grant_type", "client_credentials")])
                .await;
            if answer.status == 200 {
                break answer.access_token().to_string();
            }
            assert_eq!(answer.status, 503, "{}", answer.json);
            assert!(
                failed_over.elapsed() < Duration::from_secs(10),
                "{name} still cannot issue 10 s after the failover: {}",
                answer.json
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "{name} issues again {:?} after the failover",
            failed_over.elapsed()
        );
        tokens.push(token);
    }

    let c = config.clone().spawn().await;
    assert_eq!(c.subject_seen_upstream(before.access_token()).await, USER);
    let rotated = b.refresh(MAIL_APP, before.refresh_token(), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.json);
    assert_eq!(c.subject_seen_upstream(rotated.access_token()).await, USER);

    // Each instance's reader finds the new master too (it retries at most a second apart).
    for s in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&s.gw.metrics().await, "tollgate_revocation_stream_up") != Some(1.0) {
            assert!(
                Instant::now() < deadline,
                "the revocation stream is still down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let lag = revocation_reaches(a, b, &tokens[0]).await;
    eprintln!("after the failover: revocation reached B after {lag:?}");
    let lag = revocation_reaches(b, a, &tokens[1]).await;
    eprintln!("after the failover: revocation reached A after {lag:?}");
}

#[tokio::test]
async fn on_a_cluster_instances_agree_and_follow_slots_that_move() {
    let cluster = OwnCluster::start();
    let config = AuthConfig::default().on_url(&cluster.url());
    let (a, b) = two_instances(&config).await;
    let first = a.tokens("email").await;
    assert_eq!(b.subject_seen_upstream(first.access_token()).await, USER);
    let lag = revocation_reaches(&a, &b, &machine_token(&a).await).await;
    eprintln!("revocation reached B after {lag:?}");

    // Every slot holding one of this test's keys (records, indexes, the revocation stream)
    // moves to another node.
    let prefix = config.redis_prefix().expect("on Redis").to_string();
    let (cluster, moved) = tokio::task::spawn_blocking(move || {
        let moved = cluster.move_slots_of(&prefix);
        (cluster, moved)
    })
    .await
    .expect("resharding");
    assert!(moved >= 3, "moved {moved} slots");
    let stream_key = format!("{}revocations", config.redis_prefix().expect("on Redis"));
    eprintln!(
        "moved {moved} slots; the stream is now on node {}",
        cluster.owner(cluster.slot(&stream_key))
    );

    // Existing tokens still verify (at a fresh instance: from the store, not a cache) and
    // rotate; new ones are issued; revocations still travel both ways.
    let c = config.clone().spawn().await;
    assert_eq!(c.subject_seen_upstream(first.access_token()).await, USER);
    let rotated = b.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.json);
    assert_eq!(a.subject_seen_upstream(rotated.access_token()).await, USER);
    let lag = revocation_reaches(&a, &b, &machine_token(&a).await).await;
    eprintln!("after the move: revocation reached B after {lag:?}");
    let lag = revocation_reaches(&b, &c, &machine_token(&b).await).await;
    eprintln!("after the move: revocation reached C after {lag:?}");
}

#[tokio::test]
async fn on_a_cluster_a_code_raced_at_two_instances_is_redeemed_exactly_once() {
    let config = AuthConfig::default().on(TestStore::Cluster);
    let (a, b) = two_instances(&config).await;
    for _ in 0..5 {
        let request = AuthRequest::code(MAIL_APP, "email");
        let code = Browser::for_server(&a).code(&a, &request).await;
        let (at_a, at_b) = tokio::join!(
            a.exchange(MAIL_APP, &code, request.verifier()),
            b.exchange(MAIL_APP, &code, request.verifier())
        );
        let answers = [at_a, at_b];
        let winners: Vec<_> = answers.iter().filter(|x| x.status == 200).collect();
        assert_eq!(winners.len(), 1, "one redemption, never two, never none");
        for loser in answers.iter().filter(|x| x.status != 200) {
            loser.assert_error(400, "invalid_grant");
        }
        // The replay revoked what the winner was issued, at both instances.
        for winner in winners {
            for s in [&a, &b] {
                let token = winner.access_token();
                s.refused_after(token, Instant::now(), Duration::from_secs(1))
                    .await;
            }
        }
    }
    let issued = a
        .counter(
            "tollgate_tokens_issued_total",
            "grant_type",
            "authorization_code",
        )
        .await
        + b.counter(
            "tollgate_tokens_issued_total",
            "grant_type",
            "authorization_code",
        )
        .await;
    assert_eq!(issued, 5, "{issued} exchanges issued tokens for 5 codes");
}
