//! One shared [`Identity`] per identity among cached answers.
//!
//! A verifier builds a fresh principal per token, but the tokens one client or user holds
//! say the same thing except `exp`: with a million cached tokens of a hundred thousand
//! users, sharing cuts the identities' memory (~500 bytes each with their strings) tenfold
//! (issue 12). The verification cache interns what any verifier answers ([`Interner::intern`]);
//! the local verifier asks its own interner first with the fields it read
//! ([`Interner::share`]), so a token of a known identity costs no copies at all. The
//! interner maps a hash of an identity's fields to a weak reference of the
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
pub(crate) struct Interner {
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
        let key = IdentityKey::of(&identity);
        let hash = self.hash(&key);
        if let Some(known) = self.find(hash, &key, Some(&identity)) {
            return known;
        }
        self.keep(hash, &identity);
        identity
    }

    /// The shared identity with the fields `key` names, built from them only when none is in
    /// use (the local verifier's cold path: no strings copied, no header values encoded for
    /// a token of a known client or user). `None` when a field cannot travel in an HTTP
    /// header.
    pub fn share(&self, key: &IdentityKey<'_>) -> Option<Arc<Identity>> {
        let hash = self.hash(key);
        if let Some(known) = self.find(hash, key, None) {
            return Some(known);
        }
        // Built outside the lock; a racing builder of the same identity takes the entry
        // last, and the loser's copy lives only as long as the answer it went into.
        let identity = Arc::new(key.to_identity()?);
        self.keep(hash, &identity);
        Some(identity)
    }

    fn hash(&self, key: &IdentityKey<'_>) -> u64 {
        self.hasher.hash_one((
            key.sub,
            key.client_id,
            key.username,
            key.scopes,
            key.audiences,
            key.jkt,
        ))
    }

    fn shard(&self, hash: u64) -> parking_lot::MutexGuard<'_, Shard> {
        self.shards[(hash >> 60) as usize % SHARDS].lock()
    }

    /// The live shared identity under `hash` when it is the one `key` names (`candidate`
    /// itself, when that is already the shared copy, without comparing fields).
    fn find(
        &self,
        hash: u64,
        key: &IdentityKey<'_>,
        candidate: Option<&Arc<Identity>>,
    ) -> Option<Arc<Identity>> {
        let shard = self.shard(hash);
        let (_, known) = shard.map.find(hash, |(h, _)| *h == hash)?;
        let known = known.upgrade()?;
        let same = candidate.is_some_and(|c| Arc::ptr_eq(c, &known)) || key.names(&known);
        same.then_some(known)
    }

    /// Makes `identity` the shared copy under `hash`: a dead entry, or another identity's
    /// with the same hash, is taken over.
    fn keep(&self, hash: u64, identity: &Arc<Identity>) {
        let mut shard = self.shard(hash);
        if let Some((_, known)) = shard.map.find_mut(hash, |(h, _)| *h == hash) {
            *known = Arc::downgrade(identity);
            return;
        }
        if shard.map.len() >= shard.sweep_at {
            shard.map.retain(|(_, w)| w.strong_count() > 0);
            shard.sweep_at = (shard.map.len() * 2).max(MIN_SWEEP);
        }
        shard
            .map
            .insert_unique(hash, (hash, Arc::downgrade(identity)), |(h, _)| *h);
    }

    /// Entries held (live or not yet swept), for tests.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }
}

/// An identity's fields, borrowed: what the interner hashes and compares (the header values
/// follow from them).
pub struct IdentityKey<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub scopes: &'a [String],
    pub audiences: &'a [String],
    pub jkt: Option<&'a str>,
}

impl<'a> IdentityKey<'a> {
    pub fn of(identity: &'a Identity) -> Self {
        Self {
            sub: &identity.sub,
            client_id: &identity.client_id,
            username: identity.username.as_deref(),
            scopes: &identity.scopes,
            audiences: &identity.audiences,
            jkt: identity.jkt.as_deref(),
        }
    }

    /// True when `identity` has these fields.
    fn names(&self, identity: &Identity) -> bool {
        let other = IdentityKey::of(identity);
        self.sub == other.sub
            && self.client_id == other.client_id
            && self.username == other.username
            && self.scopes == other.scopes
            && self.audiences == other.audiences
            && self.jkt == other.jkt
    }

    fn to_identity(&self) -> Option<Identity> {
        Identity::new(
            self.sub.to_owned(),
            self.client_id.to_owned(),
            self.username.map(str::to_owned),
            self.scopes.to_vec(),
        )
        .map(|identity| Identity {
            audiences: self.audiences.to_vec(),
            jkt: self.jkt.map(str::to_owned),
            ..identity
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Principal;

    fn make(client: &str) -> Arc<Identity> {
        Principal::new(client.into(), client.into(), None, vec![], Some(1))
            .expect("ASCII")
            .identity
    }

    fn key<'a>(client: &'a str, scopes: &'a [String]) -> IdentityKey<'a> {
        IdentityKey {
            sub: client,
            client_id: client,
            username: None,
            scopes,
            audiences: &[],
            jkt: None,
        }
    }

    #[test]
    fn the_interner_keeps_one_copy_per_identity_and_forgets_dead_ones() {
        let interner = Interner::new();
        let a = interner.intern(make("a"));
        assert!(Arc::ptr_eq(&a, &interner.intern(make("a"))));
        assert!(!Arc::ptr_eq(&a, &interner.intern(make("b"))));
        // Thousands of identities that die at once: the sweeps keep the map small.
        for n in 0..20_000 {
            interner.intern(make(&format!("client{n}")));
        }
        assert!(interner.held() < 10_000, "held {}", interner.held());
        assert!(Arc::ptr_eq(&a, &interner.intern(make("a"))));
    }

    #[test]
    fn sharing_by_fields_answers_the_copy_in_use_and_builds_only_a_new_identity() {
        let interner = Interner::new();
        let a = interner.intern(make("a"));
        let shared = interner.share(&key("a", &[])).expect("ASCII");
        assert!(Arc::ptr_eq(&a, &shared), "the interned copy, not a new one");
        // Another field differs: another identity, built from the fields, then shared.
        let read = ["read".to_string()];
        let b = interner.share(&key("a", &read)).expect("ASCII");
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.scopes, ["read"]);
        assert_eq!(b.headers.scope, "read");
        assert!(Arc::ptr_eq(
            &b,
            &interner.share(&key("a", &read)).expect("ASCII")
        ));
        // Interning a fresh copy of b's fields finds b.
        let fresh = Arc::new(Identity {
            scopes: read.to_vec(),
            ..(*make("a")).clone()
        });
        assert!(Arc::ptr_eq(&b, &interner.intern(fresh)));
        // Once nobody holds it, the next share builds a new one.
        drop((a, shared));
        let again = interner.share(&key("a", &[])).expect("ASCII");
        assert_eq!(again.client_id, "a");
    }

    #[test]
    fn fields_that_cannot_be_header_values_share_nothing() {
        let interner = Interner::new();
        assert!(interner.share(&key("bad\nname", &[])).is_none());
        assert_eq!(interner.held(), 0);
    }
}
