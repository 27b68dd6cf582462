//! The in-memory store: for tests and throwaway runs. Everything is lost on exit.

use super::{LocalFeed, Record, RecordState, RevocationFeed, RevocationSink, StoreResult};
use super::{TokenHash, TokenStore};
use futures_util::future::{self, BoxFuture};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Records in a map, with a per-grant index for `revoke_grant`.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    feed: LocalFeed,
}

#[derive(Default)]
struct Inner {
    records: HashMap<TokenHash, Record>,
    grants: HashMap<String, HashSet<TokenHash>>,
    failures: HashMap<String, Vec<u64>>,
    bans: HashMap<String, u64>,
    keys: HashMap<String, [u8; 32]>,
}

impl MemoryStore {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written record (every update is
        // a single map operation), so a poisoned lock is still safe to use.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the state of an `Active` (or, for `Revoked`, any) record; returns it as it was.
    fn transition(&self, hash: &TokenHash, to: RecordState) -> Option<Record> {
        let mut inner = self.lock();
        let record = inner.records.get_mut(hash)?;
        let before = record.clone();
        if to == RecordState::Revoked || record.state == RecordState::Active {
            record.state = to;
        }
        Some(before)
    }
}

impl TokenStore for MemoryStore {
    fn insert(&self, hash: TokenHash, record: Record) -> BoxFuture<'_, StoreResult<()>> {
        let mut inner = self.lock();
        inner
            .grants
            .entry(record.grant_id.clone())
            .or_default()
            .insert(hash);
        inner.records.insert(hash, record);
        Box::pin(future::ready(Ok(())))
    }

    fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        let found = self.lock().records.get(&hash).cloned();
        Box::pin(future::ready(Ok(found)))
    }

    fn consume(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(future::ready(Ok(self.transition(&hash, RecordState::Used))))
    }

    fn revoke(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        let before = self.transition(&hash, RecordState::Revoked);
        Box::pin(async move {
            if before.is_some() {
                self.feed.publish_tokens(&[hash]).await;
            }
            Ok(before)
        })
    }

    fn revoke_grant<'a>(&'a self, grant_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<TokenHash>>> {
        let hashes: Vec<TokenHash> = {
            let mut inner = self.lock();
            let hashes: Vec<TokenHash> = inner
                .grants
                .get(grant_id)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for h in &hashes {
                if let Some(r) = inner.records.get_mut(h) {
                    r.state = RecordState::Revoked;
                }
            }
            hashes
        };
        Box::pin(async move {
            self.feed.publish_tokens(&hashes).await;
            Ok(hashes)
        })
    }

    fn delete(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<()>> {
        let mut inner = self.lock();
        if let Some(r) = inner.records.remove(&hash) {
            remove_from_grant(&mut inner.grants, &r.grant_id, &hash);
        }
        Box::pin(future::ready(Ok(())))
    }

    fn sweep(&self, now: u64) -> BoxFuture<'_, StoreResult<u64>> {
        let mut inner = self.lock();
        let expired: Vec<(TokenHash, String)> = inner
            .records
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(h, r)| (*h, r.grant_id.clone()))
            .collect();
        for (h, grant) in &expired {
            inner.records.remove(h);
            remove_from_grant(&mut inner.grants, grant, h);
        }
        let keep_after = now.saturating_sub(super::FAILURE_RETENTION_SECS);
        inner.failures.retain(|_, times| {
            times.retain(|t| *t >= keep_after);
            !times.is_empty()
        });
        inner.bans.retain(|_, until| *until > now);
        Box::pin(future::ready(Ok(expired.len() as u64)))
    }

    fn add_failure<'a>(
        &'a self,
        key: &'a str,
        at: u64,
        since: u64,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let mut inner = self.lock();
        let times = inner.failures.entry(key.to_string()).or_default();
        times.push(at);
        let count = times.iter().filter(|t| **t >= since).count() as u32;
        Box::pin(future::ready(Ok(count)))
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        self.lock().failures.remove(key);
        Box::pin(future::ready(Ok(())))
    }

    fn ban<'a>(&'a self, key: &'a str, until: u64) -> BoxFuture<'a, StoreResult<()>> {
        self.lock().bans.insert(key.to_string(), until);
        Box::pin(future::ready(Ok(())))
    }

    fn banned_until<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        let until = self.lock().bans.get(key).copied();
        Box::pin(future::ready(Ok(until)))
    }

    fn server_key<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<[u8; 32]>> {
        let key = *self
            .lock()
            .keys
            .entry(name.to_string())
            .or_insert(candidate);
        Box::pin(future::ready(Ok(key)))
    }
}

impl RevocationFeed for MemoryStore {
    fn subscribe(&self, sink: &Arc<dyn RevocationSink>) {
        self.feed.subscribe(sink);
    }

    fn count_in(&self, metrics: crate::metrics::RevocationMetrics) {
        self.feed.count_in(metrics);
    }

    fn silent_for(&self) -> Option<std::time::Duration> {
        self.feed.silent_for()
    }
}

fn remove_from_grant(
    grants: &mut HashMap<String, HashSet<TokenHash>>,
    grant: &str,
    hash: &TokenHash,
) {
    if let Some(set) = grants.get_mut(grant) {
        set.remove(hash);
        if set.is_empty() {
            grants.remove(grant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_meets_the_contract() {
        crate::store::conformance::run(&MemoryStore::default()).await;
    }
}
