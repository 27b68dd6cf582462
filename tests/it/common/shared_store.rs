//! What every store several instances share must carry, whatever carries it: the Redis
//! stream (`instances.rs`) or the revocations table of one SQLite file (`shared_sqlite.rs`).

use super::metric;
use super::oauth::{AuthServer, MAIL_APP, USER};
use std::time::{Duration, Instant};

/// A token `a` issued is honoured at `b`, which caches the answer (instances configured with
/// `cache_ttl = "60s"`); revoked at `a`, it is refused there at once and at `b` within a
/// second, and the metrics count one revocation made at `a` and one arrived at `b`.
pub async fn a_revocation_reaches_a_cached_instance(a: &AuthServer, b: &AuthServer) {
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
    let lag = b
        .refused_after(access, answered, Duration::from_secs(1))
        .await;
    eprintln!("revocation reached B after {lag:?}");

    let (at_a, at_b) = (a.gw.metrics().await, b.gw.metrics().await);
    let revocations = |text: &str, source: &str| {
        metric(
            text,
            &format!("tollgate_revocations_total{{source=\"{source}\"}}"),
        )
    };
    assert_eq!(revocations(&at_a, "local"), Some(1.0), "{at_a}");
    assert_eq!(revocations(&at_a, "stream"), Some(0.0), "A skips its own");
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
