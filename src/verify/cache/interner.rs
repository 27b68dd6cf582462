//! One shared [`Identity`] per identity among cached answers.
//!
//! A verifier builds a fresh principal per token, but the tokens one client or user holds
//! say the same thing except `exp`: with a million cached tokens of a hundred thousand
//! users, sharing cuts the identities' memory (~500 bytes each with their strings) tenfold
//! (issue 12). The interner maps a hash of an identity's fields to a weak reference of the
//! one copy in use; the copy lives as long as a cached entry or a request holds it.
//!
//! Bounded: one entry per hash (a hash collision, or an identity that died, has its entry
//! taken over), and entries whose identity died are swept out whenever the map has grown to
//! twice what was live at the last sweep (amortised O(1) per insert), so the map holds at
//! most about twice the identities alive.

use crate::verify::Identity;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

/// Shards of the map, by hash bits: enough that interning seldom waits for a lock.
const SHARDS: usize = 16;

/// Fewest entries a shard holds before it sweeps.
const MIN_SWEEP: usize = 256;

/// The interner; see the module comment.
pub(super) struct Interner {
    shards: [Mutex<Shard>; SHARDS],
    hasher: DefaultHashBuilder,
}

#[derive(Default)]
struct Shard {
    map: HashTable<(u64, Weak<Identity>)>,
    /// Sweep when the map reaches this many entries.
    sweep_at: usize,
}

impl Interner {
    pub fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    map: HashTable::new(),
                    sweep_at: MIN_SWEEP,
                })
            }),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The shared copy of `identity`: one already in use if there is one, else `identity`,
    /// which becomes the shared copy.
    pub fn intern(&self, identity: Arc<Identity>) -> Arc<Identity> {
        let id = &*identity;
        let hash = self.hasher.hash_one((
            &id.sub,
            &id.client_id,
            &id.username,
            &id.scopes,
            &id.audiences,
            &id.jkt,
        ));
        let mut shard = self.shards[(hash >> 60) as usize % SHARDS].lock();
        if let Some((_, known)) = shard.map.find_mut(hash, |(h, _)| *h == hash) {
            if let Some(known) = known.upgrade() {
                if known.same_as(id) {
                    return known;
                }
            }
            // Dead, or another identity with the same hash: this one takes the entry.
            *known = Arc::downgrade(&identity);
            return identity;
        }
        if shard.map.len() >= shard.sweep_at {
            shard.map.retain(|(_, w)| w.strong_count() > 0);
            shard.sweep_at = (shard.map.len() * 2).max(MIN_SWEEP);
        }
        shard
            .map
            .insert_unique(hash, (hash, Arc::downgrade(&identity)), |(h, _)| *h);
        identity
    }

    /// Entries held (live or not yet swept), for tests.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}
