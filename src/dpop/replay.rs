//! Proof `jti`s already used (RFC 9449 §11.1): a proof is accepted once. A `jti` only needs
//! remembering while its proof's `iat` is inside the acceptance window: after that the
//! proof is refused as stale anyway. So each id is kept until its proof would go stale.
//!
//! Two layers: a bounded in-process set (every store), and, when the store may be shared by
//! several instances, the store itself (Redis: `SET NX EX`; SQLite, whose file several
//! processes on one host may share: a `proof_ids` table), so a proof spent at one instance
//! is refused at all of them. The in-process set is asked first: a replay to this instance
//! costs no round trip.
//!
//! Bounded memory: the set holds at most [`ReplayCache::capacity`] ids. When it is full
//! of ids that are all still inside the window, a new proof cannot be remembered, and is
//! refused ([`Spent::Full`], 503) rather than accepted unrecorded: an unrecorded proof
//! could be replayed. Only proofs that passed every other check (signature, token, key
//! binding) reach the set, so filling it takes a flood of valid, bound requests.

use crate::store::TokenStore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Shards of the in-process set: concurrent requests rarely meet on one lock.
const SHARDS: usize = 16;

/// Ids held in all, by default: 1M ids of one window are ~60 MiB at most.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// What spending a proof's id found.
#[derive(Debug)]
pub enum Spent {
    /// First use: the request may go on.
    First,
    /// Seen before (here or, with a shared store, at another instance).
    Replayed,
    /// The in-process set is full of live ids: refused, see the module comment.
    Full,
    /// The shared store could not be asked (503, like any store outage on the guard).
    Store(crate::store::StoreError),
}

/// The ids of spent proofs; one per process, shared by the guard and the token endpoint.
pub struct ProofIds {
    local: ReplayCache,
    /// The store, when it is shared between instances and remembers ids itself.
    store: Option<Arc<dyn TokenStore>>,
}

/// The bounded in-process set of spent ids, each with the Unix second it may be forgotten.
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    until: HashMap<[u8; 32], u64>,
    /// Expired ids are dropped when the shard reaches this size (amortised sweeping).
    prune_at: usize,
    /// When a sweep last found the shard full: no second sweep in the same second, so a
    /// full set refuses at once instead of walking itself on every request.
    full_at: Option<u64>,
}

/// The key an id is remembered under: the proof key's thumbprint and the `jti`, so one
/// client's ids never collide with another's, hashed to a fixed size.
pub fn replay_key(jkt: &str, jti: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(jkt.as_bytes());
    h.update(b" ");
    h.update(jti.as_bytes());
    h.finalize().into()
}

// === impl ProofIds ===

impl ProofIds {
    /// Ids remembered in this process only (the memory store).
    pub fn local(capacity: usize) -> Self {
        Self {
            local: ReplayCache::new(capacity),
            store: None,
        }
    }

    /// Ids remembered here and in `store` (which every instance shares).
    pub fn shared(capacity: usize, store: Arc<dyn TokenStore>) -> Self {
        Self {
            local: ReplayCache::new(capacity),
            store: Some(store),
        }
    }

    /// The ids of a process on `store`: also remembered there when instances share it.
    pub fn for_store(store: Arc<dyn TokenStore>) -> Self {
        if store.shares_proof_ids() {
            Self::shared(DEFAULT_CAPACITY, store)
        } else {
            Self::local(DEFAULT_CAPACITY)
        }
    }

    /// Spends `key` (see [`replay_key`]), which may be forgotten at `until` (Unix seconds).
    pub async fn spend(&self, key: [u8; 32], until: u64, now: u64) -> Spent {
        match self.local.insert(key, until, now) {
            Ok(true) => {}
            Ok(false) => return Spent::Replayed,
            Err(Full) => return Spent::Full,
        }
        let Some(store) = &self.store else {
            return Spent::First;
        };
        match store
            .spend_proof_id(key, until.saturating_sub(now).max(1))
            .await
        {
            Ok(true) => Spent::First,
            Ok(false) => Spent::Replayed,
            Err(e) => Spent::Store(e),
        }
    }
}

impl Default for ProofIds {
    fn default() -> Self {
        Self::local(DEFAULT_CAPACITY)
    }
}

// === impl ReplayCache ===

/// The set is full of ids still inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard,
        }
    }

    /// How many ids it holds at most.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Remembers `key` until `until`; `Ok(false)` when it is remembered already.
    pub fn insert(&self, key: [u8; 32], until: u64, now: u64) -> Result<bool, Full> {
        let shard = &self.shards[key[0] as usize % SHARDS];
        // A panic while holding the lock leaves a valid map behind: poison is harmless.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.until.get(&key).is_some_and(|u| *u > now) {
            return Ok(false);
        }
        if shard.until.len() >= shard.prune_at {
            if shard.full_at == Some(now) {
                return Err(Full);
            }
            shard.until.retain(|_, u| *u > now);
            // The next sweep waits until the live ids have doubled (amortised O(1)).
            shard.prune_at = (shard.until.len() * 2).max(64).min(self.per_shard);
            if shard.until.len() >= self.per_shard {
                shard.full_at = Some(now);
                return Err(Full);
            }
        }
        shard.until.insert(key, until);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_spent_once_until_it_may_be_forgotten() {
        let cache = ReplayCache::new(100);
        let key = replay_key("jkt", "one");
        assert_eq!(cache.insert(key, 160, 100), Ok(true));
        assert_eq!(cache.insert(key, 160, 159), Ok(false));
        // Past its window the proof is stale anyway; the id may be used again.
        assert_eq!(cache.insert(key, 220, 160), Ok(true));
        assert_ne!(replay_key("jkt", "one"), replay_key("other", "one"));
    }

    #[test]
    fn a_full_set_refuses_instead_of_forgetting_live_ids() {
        let cache = ReplayCache::new(SHARDS);
        let per_shard = cache.per_shard;
        // Ids of one shard (the first key byte picks it).
        let key = |n: u8| {
            let mut k = [0u8; 32];
            k[1] = n;
            k
        };
        for n in 0..per_shard as u8 {
            assert_eq!(cache.insert(key(n), 200, 100), Ok(true));
        }
        assert_eq!(cache.insert(key(200), 200, 100), Err(Full));
        // Once the window has passed, the old ids are swept and room is made.
        assert_eq!(cache.insert(key(200), 300, 250), Ok(true));
    }

    #[tokio::test]
    async fn proof_ids_without_a_shared_store_use_the_local_set() {
        let ids = ProofIds::local(1000);
        let key = replay_key("k", "j");
        assert!(matches!(ids.spend(key, 160, 100).await, Spent::First));
        assert!(matches!(ids.spend(key, 160, 101).await, Spent::Replayed));
    }
}
