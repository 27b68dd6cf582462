//! Fail fast while a networked store is known to be unreachable.
//!
//! A Redis that has gone away (or whose link silently drops packets) makes every call wait
//! for the connection's timeouts. One such wait tells us the store is down; making every
//! later `/oauth/*` request and token check wait again helps nobody. [`FailFast`] wraps a
//! store: after a call fails because the store could not be reached, calls fail at once
//! with [`StoreError::Unavailable`] for [`HOLD`]; the first call after that tries the store
//! again (the readiness probe makes one a second, so recovery is seen within about a
//! second even without traffic). Answers from the store, including its refusals, pass
//! through untouched.
//!
//! Transitions are logged by the readiness probe (`readiness`), once each, not here and not
//! per request.

use super::TokenStore;
use super::{Record, RevocationFeed, RevocationSink, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// How long calls fail at once after the store could not be reached.
pub const HOLD: Duration = Duration::from_millis(500);

/// The instant hold times are counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A store that answers [`StoreError::Unavailable`] at once while it is known to be down.
pub struct FailFast<S> {
    inner: S,
    /// Calls fail at once until this many ms after [`EPOCH`].
    down_until: AtomicU64,
}

impl<S: TokenStore> FailFast<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down_until: AtomicU64::new(0),
        }
    }

    fn now_ms() -> u64 {
        EPOCH.elapsed().as_millis() as u64
    }

    /// Runs `call` unless the store is held down; a failure to reach it starts the hold.
    async fn guard<T>(&self, call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        if Self::now_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable { hold: HOLD });
        }
        let result = call.await;
        if let Err(e) = &result {
            if e.is_unreachable() {
                let until = Self::now_ms() + HOLD.as_millis() as u64;
                self.down_until.store(until, Ordering::Relaxed);
            }
        }
        result
    }
}

impl<S: TokenStore> TokenStore for FailFast<S> {
    fn insert(&self, hash: TokenHash, record: Record) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.guard(self.inner.insert(hash, record)))
    }

    fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(self.guard(self.inner.get(hash)))
    }

    fn consume(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(self.guard(self.inner.consume(hash)))
    }

    fn revoke(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(self.guard(self.inner.revoke(hash)))
    }

    fn revoke_grant<'a>(&'a self, grant_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<TokenHash>>> {
        Box::pin(self.guard(self.inner.revoke_grant(grant_id)))
    }

    fn delete(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.guard(self.inner.delete(hash)))
    }

    fn sweep(&self, now: u64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(self.guard(self.inner.sweep(now)))
    }

    fn add_failure<'a>(
        &'a self,
        key: &'a str,
        at: u64,
        since: u64,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        Box::pin(self.guard(self.inner.add_failure(key, at, since)))
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.guard(self.inner.clear_failures(key)))
    }

    fn ban<'a>(&'a self, key: &'a str, until: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.guard(self.inner.ban(key, until)))
    }

    fn banned_until<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        Box::pin(self.guard(self.inner.banned_until(key)))
    }

    fn server_key<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<[u8; 32]>> {
        Box::pin(self.guard(self.inner.server_key(name, candidate)))
    }

    fn spend_proof_id(&self, key: [u8; 32], ttl_secs: u64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.guard(self.inner.spend_proof_id(key, ttl_secs)))
    }

    fn shares_proof_ids(&self) -> bool {
        self.inner.shares_proof_ids()
    }
}

impl<S: TokenStore> RevocationFeed for FailFast<S> {
    fn subscribe(&self, sink: &Arc<dyn RevocationSink>) {
        self.inner.subscribe(sink);
    }

    fn count_in(&self, metrics: crate::metrics::RevocationMetrics) {
        self.inner.count_in(metrics);
    }

    fn silent_for(&self) -> Option<Duration> {
        self.inner.silent_for()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn after_an_unreachable_store_calls_fail_at_once_until_the_hold_ends() {
        let store = FailFast::new(MemoryStore::default());
        assert!(store.get([1; 32]).await.is_ok());
        let unreachable = || async {
            Err::<(), _>(StoreError::Redis(redis::RedisError::from(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            )))
        };
        assert!(store.guard(unreachable()).await.is_err());
        let held = store.get([1; 32]).await;
        assert!(
            matches!(held, Err(StoreError::Unavailable { .. })),
            "{held:?}"
        );
        tokio::time::sleep(HOLD + Duration::from_millis(20)).await;
        assert!(
            store.get([1; 32]).await.is_ok(),
            "tried again after the hold"
        );
    }

    #[tokio::test]
    async fn refusals_and_corrupt_records_do_not_hold_the_store_down() {
        let store = FailFast::new(MemoryStore::default());
        let corrupt = || async { Err::<(), _>(StoreError::Corrupt("x".into())) };
        assert!(store.guard(corrupt()).await.is_err());
        assert!(store.get([1; 32]).await.is_ok());
    }
}
