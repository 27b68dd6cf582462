//! The verification cache in front of any [`TokenVerifier`].
//!
//! Keyed by the SHA-256 of the token (the raw token is never kept), an active result lives
//! for `min(cache_ttl, exp − now)`, with now rounded up to the next second, so a cached
//! entry never outlives its token; an inactive one for `negative_cache_ttl`. Concurrent
//! misses for one token share a single call to the verifier (moka's entry API runs one
//! initializer per key). Errors are not cached: the next request asks again.
//!
//! The cache subscribes to the token store's revocation feed (`store::feed`): a revoked
//! token's entry is dropped before the revoking call returns.

use super::{TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::VerifyConfig;
use crate::store::{token_hash, RevocationSink, Revoked, TokenHash};
use futures_util::future::BoxFuture;
use moka::future::Cache;
use moka::Expiry;
use prometheus::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A verifier with a cache and call coalescing in front.
pub struct VerifyCache {
    cache: Cache<TokenHash, Verdict>,
    verifier: Arc<dyn TokenVerifier>,
    metrics: Arc<crate::metrics::Metrics>,
    introspection: Histogram,
}

/// Per-entry lifetimes, see the module comment.
struct VerdictExpiry {
    ttl: Duration,
    negative_ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl VerdictExpiry {
    fn lifetime(&self, verdict: &Verdict) -> Duration {
        match verdict {
            Verdict::Active(p) => match p.exp {
                Some(exp) => {
                    // `now_unix` is whole seconds, so up to one more second of the token's
                    // life may be gone already: count it as gone, or the entry could be
                    // served after `exp`.
                    let now = self.clock.now_unix().saturating_add(1);
                    Duration::from_secs(exp.saturating_sub(now)).min(self.ttl)
                }
                None => self.ttl,
            },
            Verdict::Inactive => self.negative_ttl,
        }
    }
}

impl Expiry<TokenHash, Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Verdict,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(value))
    }
}

// === impl VerifyCache ===

impl VerifyCache {
    pub fn new(
        cfg: &VerifyConfig,
        verifier: Arc<dyn TokenVerifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let expiry = VerdictExpiry {
            ttl: cfg.cache_ttl,
            negative_ttl: cfg.negative_cache_ttl,
            clock,
        };
        let cache = Cache::builder()
            .max_capacity(cfg.cache_capacity)
            .expire_after(expiry)
            .build();
        let introspection = metrics.introspection(verifier.kind());
        Self {
            cache,
            verifier,
            metrics,
            introspection,
        }
    }

    /// The verdict for `token`, from the cache when it is there.
    pub async fn verify(&self, token: &str) -> Result<Verdict, Arc<VerifyError>> {
        let key = token_hash(token);
        if let Some(verdict) = self.cache.get(&key).await {
            let counter = match verdict {
                Verdict::Active(_) => &self.metrics.cache.hit,
                Verdict::Inactive => &self.metrics.cache.negative_hit,
            };
            counter.inc();
            return Ok(verdict);
        }
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(async {
                let started = Instant::now();
                let result = self.verifier.verify(token).await;
                self.introspection.observe(started.elapsed().as_secs_f64());
                result
            })
            .await?;
        if entry.is_fresh() {
            self.metrics.cache.miss.inc();
        } else {
            self.metrics.cache.coalesced.inc();
        }
        Ok(entry.into_value())
    }

    /// Drops whatever is cached for this token hash.
    pub async fn forget(&self, hash: &TokenHash) {
        self.cache.invalidate(hash).await;
    }
}

impl RevocationSink for VerifyCache {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match event {
                Revoked::Token(hash) => self.forget(&hash).await,
                Revoked::Everything => self.cache.invalidate_all(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::verify::Principal;

    fn expiry(now: u64) -> VerdictExpiry {
        VerdictExpiry {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            clock: Arc::new(ManualClock::new(now)),
        }
    }

    fn active(exp: Option<u64>) -> Verdict {
        let p = Principal::new("a".into(), "c".into(), None, vec![], exp).expect("plain ASCII");
        Verdict::Active(Arc::new(p))
    }

    #[test]
    fn active_entry_lives_cache_ttl_when_token_lives_longer() {
        assert_eq!(
            expiry(1000).lifetime(&active(Some(5000))),
            Duration::from_secs(30)
        );
        assert_eq!(
            expiry(1000).lifetime(&active(None)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn active_entry_never_outlives_token_exp() {
        // At a clock reading of 1000 the real time is anywhere in [1000, 1001).
        assert_eq!(
            expiry(1000).lifetime(&active(Some(1007))),
            Duration::from_secs(6)
        );
        assert_eq!(expiry(1000).lifetime(&active(Some(1001))), Duration::ZERO);
        assert_eq!(expiry(1000).lifetime(&active(Some(900))), Duration::ZERO);
    }

    #[test]
    fn inactive_entry_lives_negative_ttl() {
        assert_eq!(
            expiry(1000).lifetime(&Verdict::Inactive),
            Duration::from_secs(5)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whenever an active verdict is cached (the clock stepping between inserts), the
        /// entry's life ends before the clock can read `exp`: at a reading of `now` the real
        /// time is in `[now, now + 1)`, so a hit at any instant of the entry's life happens at
        /// a reading `< exp`. It never lives longer than `cache_ttl` either.
        #[test]
        fn cached_active_verdict_never_outlives_token_exp(
            start in 0u64..4_000_000_000,
            exp_offset in -100i64..100_000,
            ttl in 0u64..100_000,
            steps in proptest::collection::vec(0u64..5_000, 1..16),
        ) {
            let clock = Arc::new(ManualClock::new(start));
            let expiry = VerdictExpiry {
                ttl: Duration::from_secs(ttl),
                negative_ttl: Duration::from_secs(5),
                clock: clock.clone(),
            };
            let exp = start.saturating_add_signed(exp_offset);
            let verdict = active(Some(exp));
            for step in steps {
                clock.advance(step);
                let now = clock.now_unix();
                let life = expiry.lifetime(&verdict).as_secs();
                proptest::prop_assert!(life <= ttl);
                if life > 0 {
                    // The last whole second of the entry's life starts before `exp - 1`.
                    proptest::prop_assert!(now + 1 + life <= exp, "now {now} life {life} exp {exp}");
                }
            }
        }
    }

    #[test]
    fn same_token_same_hash_and_different_tokens_differ() {
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
