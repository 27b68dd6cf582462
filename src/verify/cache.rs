//! The verification cache in front of any [`TokenVerifier`].
//!
//! Keyed by the SHA-256 of the token (the raw token is never kept), an active result is
//! used for `min(cache_ttl, exp − now)`, with now rounded up to the next second, so a cached
//! entry never outlives its token; an inactive one for `negative_cache_ttl`. Concurrent
//! misses for one token share a single call to the verifier (moka's entry API runs one
//! initializer per key). Errors are not cached: the next request asks again.
//!
//! The cache subscribes to the token store's revocation feed (`store::feed`): a revoked
//! token's entry is dropped before the revoking call returns, or, for a revocation made by
//! another instance, when it arrives over the feed's shared channel.
//!
//! In front of the local verifier, two more rules make answers age (see [`Staleness`]):
//! - when the shared channel has been silent longer than `[verify] max_stale`, a revocation
//!   made elsewhere may be missing, so an active answer is re-checked at the store before
//!   use (unless it was itself checked less than `max_stale` ago);
//! - an active answer is kept `stale_grace` past `cache_ttl`, so that while the store cannot
//!   be reached a route with `when_store_down = "serve_cached"` keeps serving tokens it
//!   verified at most `stale_grace` ago; `"deny"` answers 503 instead.

use super::{TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::{VerifyConfig, WhenStoreDown};
use crate::store::{token_hash, RevocationFeed, RevocationSink, Revoked, TokenHash};
use futures_util::future::BoxFuture;
use moka::future::Cache;
use moka::Expiry;
use prometheus::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// After the store failed a re-check, stale answers skip it for this long (the outage is
/// answered by `when_store_down` at once instead of by one failed call per request).
const STORE_DOWN_BACKOFF: Duration = Duration::from_millis(250);

/// A verifier with a cache and call coalescing in front.
pub struct VerifyCache {
    cache: Cache<TokenHash, Entry>,
    verifier: Arc<dyn TokenVerifier>,
    metrics: Arc<crate::metrics::Metrics>,
    introspection: Histogram,
    ttl: Duration,
    staleness: Option<Staleness>,
    /// Spent DPoP proof ids, which the guard checks after a proof passed everything else.
    proof_ids: Arc<crate::dpop::ProofIds>,
    /// The clock proofs' `iat` is checked against.
    clock: Arc<dyn Clock>,
}

/// How answers from the local verifier age (see the module comment). The remote verifier
/// has neither a feed nor a store of ours: its answers simply live `cache_ttl`.
pub struct Staleness {
    /// The store's revocation feed, asked how long its shared channel has been silent.
    pub feed: Arc<dyn RevocationFeed + Send + Sync>,
    pub max_stale: Duration,
    pub grace: Duration,
    /// Until when (ms after [`EPOCH`]) the store counts as down for re-checks.
    down_until: AtomicU64,
}

/// The instant the backoff times are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// One cached answer and when it was had from the verifier.
#[derive(Clone)]
struct Entry {
    verdict: Verdict,
    checked: Instant,
}

/// Per-entry lifetimes, see the module comment.
struct VerdictExpiry {
    /// How long an active answer is kept: `cache_ttl`, plus `stale_grace` when stale
    /// answers may be served.
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

impl Expiry<TokenHash, Entry> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenHash,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(self.lifetime(&value.verdict))
    }
}

// === impl Staleness ===

impl Staleness {
    pub fn new(
        feed: Arc<dyn RevocationFeed + Send + Sync>,
        max_stale: Duration,
        grace: Duration,
    ) -> Self {
        Self {
            feed,
            max_stale,
            grace,
            down_until: AtomicU64::new(0),
        }
    }

    /// True when an active answer checked `age` ago may be used without a re-check.
    fn current(&self, age: Duration, ttl: Duration) -> bool {
        if age > ttl {
            return false;
        }
        match self.feed.silent_for() {
            None => true,
            Some(silent) => silent <= self.max_stale || age <= self.max_stale,
        }
    }

    fn store_down(&self) -> bool {
        (EPOCH.elapsed().as_millis() as u64) < self.down_until.load(Ordering::Relaxed)
    }

    fn note_store_down(&self) {
        let until = (EPOCH.elapsed() + STORE_DOWN_BACKOFF).as_millis() as u64;
        self.down_until.store(until, Ordering::Relaxed);
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
        Self::build(cfg, verifier, clock, metrics, None)
    }

    /// A cache in front of the local verifier whose answers age by `staleness`.
    pub fn with_staleness(
        cfg: &VerifyConfig,
        verifier: Arc<dyn TokenVerifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::metrics::Metrics>,
        staleness: Staleness,
    ) -> Self {
        Self::build(cfg, verifier, clock, metrics, Some(staleness))
    }

    fn build(
        cfg: &VerifyConfig,
        verifier: Arc<dyn TokenVerifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::metrics::Metrics>,
        staleness: Option<Staleness>,
    ) -> Self {
        let grace = staleness.as_ref().map_or(Duration::ZERO, |s| s.grace);
        let expiry = VerdictExpiry {
            ttl: cfg.cache_ttl.saturating_add(grace),
            negative_ttl: cfg.negative_cache_ttl,
            clock: clock.clone(),
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
            ttl: cfg.cache_ttl,
            staleness,
            proof_ids: Arc::default(),
            clock,
        }
    }

    /// The same cache spending DPoP proof ids from `ids` (the process's one set) instead of
    /// a set of its own.
    pub fn with_proof_ids(mut self, ids: Arc<crate::dpop::ProofIds>) -> Self {
        self.proof_ids = ids;
        self
    }

    /// Where the guard spends the ids of DPoP proofs.
    pub fn proof_ids(&self) -> &crate::dpop::ProofIds {
        &self.proof_ids
    }

    /// Unix seconds by the verifier's clock, for DPoP proofs' `iat`.
    pub fn now_unix(&self) -> u64 {
        self.clock.now_unix()
    }

    /// The verdict for `token`, from the cache when it is there and current. `when_down`
    /// (the route's) decides whether an answer that needs a re-check the store cannot give
    /// may still be used.
    pub async fn verify(
        &self,
        token: &str,
        when_down: WhenStoreDown,
    ) -> Result<Verdict, Arc<VerifyError>> {
        let key = token_hash(token);
        if let Some(entry) = self.cache.get(&key).await {
            match (&entry.verdict, &self.staleness) {
                (Verdict::Inactive, _) => {
                    self.metrics.cache.negative_hit.inc();
                    return Ok(entry.verdict);
                }
                (Verdict::Active(_), None) => {
                    self.metrics.cache.hit.inc();
                    return Ok(entry.verdict);
                }
                (Verdict::Active(_), Some(staleness)) => {
                    let age = entry.checked.elapsed();
                    if staleness.current(age, self.ttl) {
                        self.metrics.cache.hit.inc();
                        return Ok(entry.verdict);
                    }
                    return self.recheck(token, key, entry, staleness, when_down).await;
                }
            }
        }
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(async {
                let started = Instant::now();
                let result = self.verifier.verify(token).await;
                self.introspection.observe(started.elapsed().as_secs_f64());
                result.map(|verdict| Entry {
                    verdict,
                    checked: Instant::now(),
                })
            })
            .await?;
        if entry.is_fresh() {
            self.metrics.cache.miss.inc();
        } else {
            self.metrics.cache.coalesced.inc();
        }
        Ok(entry.into_value().verdict)
    }

    /// Asks the store again about a cached active answer that is no longer current; when it
    /// cannot answer, `when_down` decides whether the cached answer is still used.
    async fn recheck(
        &self,
        token: &str,
        key: TokenHash,
        cached: Entry,
        staleness: &Staleness,
        when_down: WhenStoreDown,
    ) -> Result<Verdict, Arc<VerifyError>> {
        let error = if staleness.store_down() {
            None
        } else {
            let started = Instant::now();
            let result = self.verifier.verify(token).await;
            self.introspection.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(verdict) => {
                    self.metrics.cache.stale_revalidated.inc();
                    let entry = Entry {
                        verdict: verdict.clone(),
                        checked: Instant::now(),
                    };
                    self.cache.insert(key, entry).await;
                    return Ok(verdict);
                }
                Err(e) => {
                    staleness.note_store_down();
                    Some(e)
                }
            }
        };
        let within_grace = cached.checked.elapsed() <= staleness.grace;
        if when_down == WhenStoreDown::ServeCached && within_grace {
            self.metrics.cache.stale_served.inc();
            return Ok(cached.verdict);
        }
        self.metrics.cache.stale_refused.inc();
        Err(Arc::new(error.unwrap_or(VerifyError::StoreDown)))
    }

    /// How many answers are cached, once the cache's pending bookkeeping (inserts and
    /// evictions it applies in batches) is done. For the memory bench and tests.
    pub async fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Drops whatever is cached for this token hash.
    pub async fn forget(&self, hash: &TokenHash) {
        self.cache.invalidate(hash).await;
    }
}

impl RevocationSink for VerifyCache {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The verifier first: once the entry is gone, the next request asks it again.
            self.verifier.revoked(&event);
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
