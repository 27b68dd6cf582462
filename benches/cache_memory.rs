//! What the verification cache costs in memory: the process's RSS before and after the real
//! [`VerifyCache`] has cached `CACHE_MEMORY_TOKENS` (1,000,000) active answers, each put there
//! through `VerifyCache::verify` as the guard does it (SHA-256 key, the table's 64-byte slot
//! with its expiry, the principal's identity shared through the cache's interner). Issue 12's
//! target: at most 256 MiB of RSS with a million cached tokens. See `benches/README.md`
//! ("Verification cache memory").
//!
//! The verifier builds a fresh `Principal` per token as the local verifier does from a store
//! record, half of them shaped like `client_credentials` tokens (`sub` = client id, one
//! scope, the issuer as audience) and half like a user's (one of 100,000 users: its own `sub`
//! and `username`, three scopes, a route's URL as audience); the cache keeps one identity per
//! client or user. `CACHE_MEMORY_SHARED=1` hands out one shared `Principal` instead, which
//! leaves the cache's own share (key, slot, index).
//!
//! `cargo bench --bench cache_memory`; knobs `CACHE_MEMORY_TOKENS`, `CACHE_MEMORY_SHARED`.
//! Under `cargo test --all-targets` (no `--bench`) it is a smoke test with 20,000 tokens that
//! fails unless every token was answered active and every answer is cached.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tollgate::clock::SystemClock;
use tollgate::config::{VerifyConfig, VerifySource, WhenStoreDown};
use tollgate::metrics::Metrics;
use tollgate::store::TokenHash;
use tollgate::verify::cache::VerifyCache;
use tollgate::verify::{Principal, TokenVerifier, Verdict, VerifyError};

/// Answers every token active, with a principal shaped like a store record's.
struct RecordShaped {
    exp: u64,
    /// `CACHE_MEMORY_SHARED=1`: this one principal for every token.
    shared: Option<Principal>,
}

impl RecordShaped {
    /// What `LocalVerifier` makes of a record: even tokens a client's, odd ones a user's.
    fn principal(&self, token: &str) -> Principal {
        let n: u64 = token[token.len() - 9..].parse().unwrap_or(0);
        let p = if n.is_multiple_of(2) {
            Principal::new(
                "reports-service".into(),
                "reports-service".into(),
                None,
                vec!["reports.write".into()],
                Some(self.exp),
            )
            .map(|p| p.with_audiences(vec!["https://auth.example.com".into()]))
        } else {
            let user = format!("user{:06}", n % 100_000);
            Principal::new(
                user.clone(),
                "mail-app".into(),
                Some(user),
                vec!["openid".into(), "email".into(), "email.send".into()],
                Some(self.exp),
            )
            .map(|p| p.with_audiences(vec!["https://api.example.com/api/mail".into()]))
        };
        p.expect("plain ASCII fields")
    }
}

impl TokenVerifier for RecordShaped {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        _hash: &'a TokenHash,
    ) -> Pin<Box<dyn Future<Output = Result<Verdict, VerifyError>> + Send + 'a>> {
        let principal = match &self.shared {
            Some(p) => p.clone(),
            None => self.principal(token),
        };
        Box::pin(async move { Ok(Verdict::Active(principal)) })
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

/// The process's resident set in KiB (`/proc/self/statm`, pages of 4 KiB).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's second field");
    pages * 4
}

/// A 43-character token (as tollgate issues: 256 bits, base64url) ending in `n`.
fn token(n: u64) -> String {
    format!("q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9o{n:09}")
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let knob = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let tokens = knob(
        "CACHE_MEMORY_TOKENS",
        if smoke { 20_000 } else { 1_000_000 },
    );
    let shared = knob("CACHE_MEMORY_SHARED", 0) == 1;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    let mut verifier = RecordShaped { exp, shared: None };
    if shared {
        verifier.shared = Some(verifier.principal(&token(0)));
    }
    // The capacity the README tells a deployment with a million live tokens to set.
    let cfg = VerifyConfig {
        source: VerifySource::Local,
        cache_ttl: Duration::from_secs(600),
        negative_cache_ttl: Duration::from_secs(5),
        cache_capacity: tokens,
        max_stale: Duration::from_secs(1),
        stale_grace: Duration::from_secs(300),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cache = VerifyCache::new(
        &cfg,
        Arc::new(verifier),
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
    );
    let before = rss_kib();
    let started = Instant::now();
    let (active, cached) = rt.block_on(async {
        let mut active = 0u64;
        for n in 0..tokens {
            let verdict = cache
                .verify(&token(n), WhenStoreDown::ServeCached)
                .await
                .expect("the verifier always answers");
            active += u64::from(matches!(verdict, Verdict::Active(_)));
        }
        (active, cache.entry_count())
    });
    let took = started.elapsed();
    let after = rss_kib();
    let delta = after.saturating_sub(before);
    println!(
        "cache_memory: {tokens} tokens ({}), {active} active, {cached} cached, filled in {:.2} s",
        if shared {
            "one shared principal"
        } else {
            "a principal each"
        },
        took.as_secs_f64()
    );
    println!(
        "RSS: {before} KiB before -> {after} KiB with the cache full: +{delta} KiB ({:.1} MiB), {:.0} bytes per cached token",
        delta as f64 / 1024.0,
        delta as f64 * 1024.0 / tokens.max(1) as f64
    );
    println!(
        "size_of: Principal {} bytes, its Identity {} bytes (in an Arc: +16), Verdict {} bytes",
        std::mem::size_of::<Principal>(),
        std::mem::size_of::<tollgate::verify::Identity>(),
        std::mem::size_of::<Verdict>()
    );
    assert_eq!(active, tokens, "every token must be answered active");
    assert_eq!(cached, tokens, "every answer must be cached");
}
