//! The verification cache in front of any [`TokenVerifier`].
//!
//! Keyed by the SHA-256 of the token (the raw token is never kept), an active result is
//! used for `min(cache_ttl, exp − now)`, with now rounded up to the next second, so a cached
//! entry never outlives its token; an inactive one for `negative_cache_ttl`. Concurrent
//! misses for one token share a single call to the verifier, and its error if it fails.
//! Errors are not cached: the next request asks again. The table ([`table`]: sharded, CLOCK
//! eviction within `cache_capacity`, expiry checked on read) is this module's own, and the
//! entries share their identities ([`Interner`], `verify::interner`), for memory and the
//! cold path's cost (issue 12; benches/README.md "Verification cache memory").
//!
//! The cache subscribes to the token store's revocation feed (`store::feed`): a revoked
//! token's entry is dropped before the revoking call returns, or, for a revocation made by
//! another instance, when it arrives over the feed's shared channel. A verifier call in
//! flight for the token then (it may have read the store before the revocation) still
//! answers its callers, but its answer is not cached.
//!
//! In front of the local verifier, two more rules make answers age (see [`Staleness`]):
//! - when the shared channel has been silent longer than `[verify] max_stale`, a revocation
//!   made elsewhere may be missing, so an active answer is re-checked at the store before
//!   use (unless it was itself checked less than `max_stale` ago);
//! - an active answer is kept `stale_grace` past `cache_ttl`, so that while the store cannot
//!   be reached a route with `when_store_down = "serve_cached"` keeps serving tokens it
//!   verified at most `stale_grace` ago; `"deny"` answers 503 instead.

mod table;

use super::interner::Interner;
use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::{VerifyConfig, WhenStoreDown};
use crate::store::{token_hash, RevocationFeed, RevocationSink, Revoked, TokenHash};
use futures_util::future::BoxFuture;
use prometheus::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use table::{Cached, Flight, Lookup, Outcome, Table};

/// After the store failed a re-check, stale answers skip it for this long (the outage is
/// answered by `when_store_down` at once instead of by one failed call per request).
const STORE_DOWN_BACKOFF: Duration = Duration::from_millis(250);

/// A verifier with a cache and call coalescing in front.
pub struct VerifyCache {
    table: Table,
    interner: Interner,
    /// Per-entry lifetimes.
    expiry: VerdictExpiry,
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
        let introspection = metrics.introspection(verifier.kind());
        Self {
            table: Table::new(cfg.cache_capacity),
            interner: Interner::new(),
            expiry,
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
        let now = self.table.now();
        let flight = match self.table.lookup(&key, now) {
            Lookup::Hit(cached) => return self.hit(token, key, cached, now, when_down).await,
            Lookup::Miss(flight) => flight,
        };
        // Leaves the flight however this call ends (dropped mid-way included).
        let _leave = Leave {
            table: &self.table,
            key: &key,
            flight: &flight,
        };
        let mut ran = false;
        let outcome = flight
            .outcome
            .get_or_init(|| {
                ran = true;
                self.fetch(token, &key, &flight)
            })
            .await
            .clone();
        // An error counts as neither (the verifier's own metrics count it).
        match (&outcome, ran) {
            (Err(_), _) => {}
            (Ok(_), true) => self.metrics.cache.miss.inc(),
            (Ok(_), false) => self.metrics.cache.coalesced.inc(),
        }
        outcome
    }

    /// A cached answer: used as it is, or (an active one from the local verifier that is no
    /// longer current) re-checked.
    async fn hit(
        &self,
        token: &str,
        key: TokenHash,
        cached: Cached,
        now: u64,
        when_down: WhenStoreDown,
    ) -> Result<Verdict, Arc<VerifyError>> {
        let Some(identity) = cached.identity.clone() else {
            self.metrics.cache.negative_hit.inc();
            return Ok(Verdict::Inactive);
        };
        let verdict = Verdict::Active(Principal {
            identity,
            exp: cached.exp,
        });
        if let Some(staleness) = &self.staleness {
            if !staleness.current(age(cached.checked, now), self.ttl) {
                return self
                    .recheck(token, key, verdict, cached.checked, staleness, when_down)
                    .await;
            }
        }
        self.metrics.cache.hit.inc();
        Ok(verdict)
    }

    /// The verifier's answer for a miss (run by one caller of the flight), cached unless it
    /// is an error.
    async fn fetch(&self, token: &str, key: &TokenHash, flight: &Arc<Flight>) -> Outcome {
        let started = Instant::now();
        let result = self.verifier.verify(token, key).await;
        let now = self.answered(started);
        match result {
            Ok(verdict) => {
                let (verdict, cached) = self.keep(verdict, now);
                let expires = cached.checked.saturating_add(self.lifetime_us(&verdict));
                self.table.land(key, flight, Some((cached, expires)), now);
                Ok(verdict)
            }
            Err(e) => {
                self.table.land(key, flight, None, now);
                Err(Arc::new(e))
            }
        }
    }

    /// Observes how long the verifier call begun at `started` took, and returns when it
    /// ended by the table's clock (one clock read for both).
    fn answered(&self, started: Instant) -> u64 {
        let ended = Instant::now();
        self.introspection
            .observe(ended.saturating_duration_since(started).as_secs_f64());
        self.table.at(ended)
    }

    /// The verdict with its identity shared ([`Interner`]), and what the table keeps of it,
    /// checked at `checked`.
    fn keep(&self, verdict: Verdict, checked: u64) -> (Verdict, Cached) {
        match verdict {
            Verdict::Active(p) => {
                let identity = self.interner.intern(p.identity);
                let cached = Cached {
                    identity: Some(identity.clone()),
                    exp: p.exp,
                    checked,
                };
                (
                    Verdict::Active(Principal {
                        identity,
                        exp: p.exp,
                    }),
                    cached,
                )
            }
            Verdict::Inactive => (
                Verdict::Inactive,
                Cached {
                    identity: None,
                    exp: None,
                    checked,
                },
            ),
        }
    }

    /// How long `verdict` is kept, in µs.
    fn lifetime_us(&self, verdict: &Verdict) -> u64 {
        u64::try_from(self.expiry.lifetime(verdict).as_micros()).unwrap_or(u64::MAX >> 1)
    }

    /// Asks the store again about a cached active answer that is no longer current; when it
    /// cannot answer, `when_down` decides whether the cached answer is still used.
    async fn recheck(
        &self,
        token: &str,
        key: TokenHash,
        cached: Verdict,
        checked: u64,
        staleness: &Staleness,
        when_down: WhenStoreDown,
    ) -> Result<Verdict, Arc<VerifyError>> {
        let error = if staleness.store_down() {
            None
        } else {
            let started = Instant::now();
            let result = self.verifier.verify(token, &key).await;
            let now = self.answered(started);
            match result {
                Ok(verdict) => {
                    self.metrics.cache.stale_revalidated.inc();
                    let (verdict, entry) = self.keep(verdict, now);
                    let expires = entry.checked.saturating_add(self.lifetime_us(&verdict));
                    self.table.insert(&key, entry, expires, now);
                    return Ok(verdict);
                }
                Err(e) => {
                    staleness.note_store_down();
                    Some(e)
                }
            }
        };
        let within_grace = age(checked, self.table.now()) <= staleness.grace;
        if when_down == WhenStoreDown::ServeCached && within_grace {
            self.metrics.cache.stale_served.inc();
            return Ok(cached);
        }
        self.metrics.cache.stale_refused.inc();
        Err(Arc::new(error.unwrap_or(VerifyError::StoreDown)))
    }

    /// How many answers are cached and not expired. For the memory bench and tests.
    pub fn entry_count(&self) -> u64 {
        self.table.live(self.table.now())
    }

    /// Drops whatever is cached for this token hash (and lets no verifier call already in
    /// flight for it cache its answer).
    pub fn forget(&self, hash: &TokenHash) {
        self.table.remove(hash);
    }

    /// Drops everything cached.
    pub fn forget_all(&self) {
        self.table.clear();
    }
}

/// How long ago `checked` was at `now` (both µs since the table's epoch).
fn age(checked: u64, now: u64) -> Duration {
    Duration::from_micros(now.saturating_sub(checked))
}

/// Leaves a flight when its caller is done or dropped (see `Table::leave`).
struct Leave<'a> {
    table: &'a Table,
    key: &'a TokenHash,
    flight: &'a Arc<Flight>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.table.leave(self.key, self.flight);
    }
}

impl RevocationSink for VerifyCache {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The verifier first: once the entry is gone, the next request asks it again.
            self.verifier.revoked(&event);
            match event {
                Revoked::Token(hash) => self.forget(&hash),
                Revoked::Everything => self.forget_all(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn expiry(now: u64) -> VerdictExpiry {
        VerdictExpiry {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            clock: Arc::new(ManualClock::new(now)),
        }
    }

    fn active(exp: Option<u64>) -> Verdict {
        let p = Principal::new("a".into(), "c".into(), None, vec![], exp).expect("plain ASCII");
        Verdict::Active(p)
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

    /// A verifier that answers each token after `gate` lets it through: active with an
    /// identity per client (`client:n` → client id `client`, exp `n`), inactive for
    /// `inactive`, an error for `fail`. Counts its calls.
    struct Gated {
        calls: std::sync::atomic::AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl Gated {
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Self {
                calls: 0.into(),
                gate: tokio::sync::Semaphore::new(if open { 1 << 20 } else { 0 }),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl TokenVerifier for Gated {
        fn verify<'a>(
            &'a self,
            token: &'a str,
            _hash: &'a TokenHash,
        ) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = self.gate.acquire().await.map(|p| p.forget());
                match token.split_once(':') {
                    _ if token == "fail" => Err(VerifyError::StoreDown),
                    Some((client, exp)) => {
                        let exp = exp.parse().ok();
                        let p = Principal::new(
                            client.into(),
                            client.into(),
                            None,
                            vec!["read".into()],
                            exp,
                        );
                        Ok(p.map_or(Verdict::Inactive, Verdict::Active))
                    }
                    None => Ok(Verdict::Inactive),
                }
            })
        }

        fn kind(&self) -> &'static str {
            "local"
        }
    }

    fn cache_with(
        verifier: Arc<Gated>,
        capacity: u64,
    ) -> (VerifyCache, Arc<crate::metrics::Metrics>) {
        let cfg = VerifyConfig {
            source: crate::config::VerifySource::Local,
            cache_ttl: Duration::from_secs(30),
            negative_cache_ttl: Duration::from_secs(5),
            cache_capacity: capacity,
            max_stale: Duration::from_secs(1),
            stale_grace: Duration::from_secs(300),
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let clock = Arc::new(ManualClock::new(1_000));
        (
            VerifyCache::new(&cfg, verifier, clock, metrics.clone()),
            metrics,
        )
    }

    const LATER: &str = "app:100000";

    #[tokio::test]
    async fn concurrent_misses_for_one_token_make_one_verifier_call() {
        let verifier = Gated::new(false);
        let (cache, metrics) = cache_with(verifier.clone(), 100);
        let calls = (0..20).map(|_| cache.verify(LATER, WhenStoreDown::Deny));
        let release = async {
            tokio::task::yield_now().await;
            verifier.gate.add_permits(1 << 20);
        };
        let (answers, ()) = tokio::join!(futures_util::future::join_all(calls), release);
        assert_eq!(verifier.calls(), 1);
        assert!(answers
            .iter()
            .all(|a| matches!(a, Ok(Verdict::Active(p)) if p.exp == Some(100_000))));
        assert_eq!(metrics.cache.miss.get(), 1);
        assert_eq!(metrics.cache.coalesced.get(), 19);
        // Cached now.
        assert!(cache.verify(LATER, WhenStoreDown::Deny).await.is_ok());
        assert_eq!((verifier.calls(), metrics.cache.hit.get()), (1, 1));
        assert_eq!(cache.entry_count(), 1);
    }

    #[tokio::test]
    async fn coalesced_misses_share_an_error_which_is_not_cached() {
        let verifier = Gated::new(false);
        let (cache, _) = cache_with(verifier.clone(), 100);
        let calls = (0..5).map(|_| cache.verify("fail", WhenStoreDown::Deny));
        let release = async {
            tokio::task::yield_now().await;
            verifier.gate.add_permits(1 << 20);
        };
        let (answers, ()) = tokio::join!(futures_util::future::join_all(calls), release);
        assert!(answers.iter().all(Result::is_err));
        assert_eq!(verifier.calls(), 1);
        assert!(cache.verify("fail", WhenStoreDown::Deny).await.is_err());
        assert_eq!(verifier.calls(), 2, "errors are not cached");
        assert_eq!(cache.entry_count(), 0);
    }

    #[tokio::test]
    async fn a_dropped_first_caller_hands_the_call_to_one_that_waits() {
        use futures_util::FutureExt;
        let verifier = Gated::new(false);
        let (cache, _) = cache_with(verifier.clone(), 100);
        let mut first = Box::pin(cache.verify(LATER, WhenStoreDown::Deny));
        let mut second = Box::pin(cache.verify(LATER, WhenStoreDown::Deny));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        drop(first);
        verifier.gate.add_permits(1 << 20);
        assert!(matches!(second.await, Ok(Verdict::Active(_))));
        assert_eq!(verifier.calls(), 2);
        assert_eq!(cache.entry_count(), 1);
    }

    #[tokio::test]
    async fn forget_and_forget_all_make_the_next_request_ask_again() {
        let verifier = Gated::new(true);
        let (cache, _) = cache_with(verifier.clone(), 100);
        for token in [LATER, "other:100000", "unknown"] {
            cache
                .verify(token, WhenStoreDown::Deny)
                .await
                .expect("answered");
        }
        assert_eq!((verifier.calls(), cache.entry_count()), (3, 3));
        cache.revoked(Revoked::Token(token_hash(LATER))).await;
        assert_eq!(cache.entry_count(), 2);
        cache
            .verify(LATER, WhenStoreDown::Deny)
            .await
            .expect("answered");
        cache
            .verify("other:100000", WhenStoreDown::Deny)
            .await
            .expect("answered");
        assert_eq!(verifier.calls(), 4, "only the forgotten token asked again");
        cache.revoked(Revoked::Everything).await;
        assert_eq!(cache.entry_count(), 0);
        for token in [LATER, "other:100000", "unknown"] {
            cache
                .verify(token, WhenStoreDown::Deny)
                .await
                .expect("answered");
        }
        assert_eq!(verifier.calls(), 7);
    }

    #[tokio::test]
    async fn tokens_of_one_identity_share_it_and_keep_their_own_exp() {
        let verifier = Gated::new(true);
        let (cache, _) = cache_with(verifier.clone(), 100);
        let mut principals = Vec::new();
        for token in ["app:100001", "app:100002", "app:100001", "other:100001"] {
            match cache.verify(token, WhenStoreDown::Deny).await {
                Ok(Verdict::Active(p)) => principals.push(p),
                other => panic!("{token}: {other:?}"),
            }
        }
        assert!(Arc::ptr_eq(
            &principals[0].identity,
            &principals[1].identity
        ));
        assert!(Arc::ptr_eq(
            &principals[0].identity,
            &principals[2].identity
        ));
        assert!(!Arc::ptr_eq(
            &principals[0].identity,
            &principals[3].identity
        ));
        let exps: Vec<_> = principals.iter().map(|p| p.exp).collect();
        assert_eq!(
            exps,
            [Some(100_001), Some(100_002), Some(100_001), Some(100_001)]
        );
        assert_eq!(principals[3].client_id, "other");
    }

    #[tokio::test]
    async fn the_capacity_bounds_what_is_cached() {
        let verifier = Gated::new(true);
        let (cache, _) = cache_with(verifier.clone(), 10);
        for n in 0..100 {
            let token = format!("app{n}:100000");
            cache
                .verify(&token, WhenStoreDown::Deny)
                .await
                .expect("answered");
            assert!(cache.entry_count() <= 10);
        }
        assert_eq!(cache.entry_count(), 10);
    }

    #[test]
    fn same_token_same_hash_and_different_tokens_differ() {
        assert_eq!(token_hash("abc"), token_hash("abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }
}
