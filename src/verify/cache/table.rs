//! The verification cache's table: cached answers by token hash, bounded, expiring, with
//! the misses in flight beside them.
//!
//! Why not a general-purpose cache (moka before, issue 12): a million cached tokens cost
//! 358 bytes each in moka's bookkeeping, key and entry alone, and its miss path (entry
//! API, write log, housekeeping) ~3.5 µs per cold request. What this cache needs is small:
//! a 32-byte key that is already a uniform hash, a 64-byte entry, expiry checked on read,
//! a capacity bound, and one verifier call per token in flight.
//!
//! Layout: [`SHARDS`] (fewer for small capacities) shards by key bits, each a short
//! non-async mutex around a dense `Vec` of [`Slot`]s and a `hashbrown` index of `u32` slot
//! numbers (5 bytes a bucket). An entry costs its 64-byte slot plus about 8 bytes of index,
//! against ~1.6× the entry in a table holding entries inline (buckets are a power of two
//! at most 7/8 full). No lock is held across an `.await`; each is held for one probe.
//!
//! Bound: one count of entries for the whole table, reserved before an entry is added, so
//! the number of entries never exceeds `capacity` once the inserts that raced have ended
//! (each reservation past the bound evicts one entry first).
//!
//! Eviction is CLOCK (second chance) per shard: a hit sets the slot's referenced bit; the
//! shard's hand sweeps its slots, clearing bits, and takes the first slot whose bit is clear
//! or whose entry has expired, and the new entry goes into that slot (so it gets a whole
//! sweep to be used before it can go). Why: a hit costs one bit written under the lock
//! already held; it keeps tokens in use over tokens seen once (a burst of unknown tokens, the
//! cold path, pushes out each other first), and it needs no list links (LRU would need 16
//! bytes a slot and a write per hit to relink). Evictions are amortised O(1): each bit set by a
//! hit is cleared once.
//!
//! Expiry: each slot holds its deadline (µs since the table's epoch, `Instant`-based); a read
//! never returns an entry at or past it and removes it. Expired entries nobody asks for
//! again are taken first by the hand when space is needed; there is no background task.
//!
//! Times are passed in (`now`, µs since [`Table::epoch`]), so the table is tested without
//! sleeping.

use crate::store::TokenHash;
use crate::verify::{Identity, Verdict, VerifyError};
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Most shards: enough that one worker per core rarely meets another on a lock.
pub(super) const SHARDS: usize = 64;

/// A verifier's answer as the cache hands it around (errors shared by coalesced callers).
pub(super) type Outcome = Result<Verdict, Arc<VerifyError>>;

/// What the table keeps of one answer.
#[derive(Clone)]
pub(super) struct Cached {
    /// `None`: the token is inactive.
    pub identity: Option<Arc<Identity>>,
    /// The token's `exp` (active answers).
    pub exp: Option<u64>,
    /// When the answer was had from the verifier (µs since the epoch).
    pub checked: u64,
}

/// One verifier call in flight, which concurrent misses for the same token join.
pub(super) struct Flight {
    /// Set once, by whichever caller ran the call to its end (the first, or the next if
    /// the first was dropped on the way).
    pub outcome: tokio::sync::OnceCell<Outcome>,
    /// The shard's generation when the flight started: an answer had across an
    /// invalidation in the shard is returned to the callers but not cached.
    generation: u64,
}

/// What a lookup found.
pub(super) enum Lookup {
    Hit(Cached),
    /// Not cached: the flight to join (or to run, if nobody has yet).
    Miss(Arc<Flight>),
}

/// The 64 bytes of one cached answer.
struct Slot {
    key: TokenHash,
    identity: Option<Arc<Identity>>,
    /// The token's `exp`, [`NO_EXP`] for none.
    exp: u64,
    /// The deadline (µs since the epoch), with [`REFERENCED`] as its top bit.
    expires: u64,
    checked: u64,
}

/// `Slot::exp` of a token without `exp` (one with `exp = u64::MAX` reads back as none).
const NO_EXP: u64 = u64::MAX;

/// CLOCK's referenced bit, kept in `Slot::expires` (µs since the epoch stay below 2^63).
const REFERENCED: u64 = 1 << 63;

/// One shard: slots, their index and the flights in progress.
#[derive(Default)]
struct Shard {
    /// Slot numbers, hashed by their key's first 8 bytes.
    index: HashTable<u32>,
    slots: Vec<Slot>,
    /// CLOCK's hand: the slot it looks at next.
    hand: usize,
    /// Bumped by every invalidation in this shard.
    generation: u64,
    flights: HashTable<(TokenHash, Arc<Flight>)>,
}

/// A shard on a cache line of its own, so neighbouring locks do not share a line.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

/// The table; see the module comment.
pub(super) struct Table {
    shards: Box<[Padded]>,
    /// `shards.len() - 1`.
    mask: usize,
    capacity: usize,
    /// Entries in all shards plus inserts under way (see the bound in the module comment).
    len: AtomicUsize,
    /// What a shard's slots are expected to grow to, so `Vec` doubling stops near it.
    expected: usize,
    epoch: Instant,
}

/// Where a key's bits go: the index hashes the first 8 bytes, shards use the next ones
/// (the key is a SHA-256, so every bit is uniform and independent).
fn slot_hash(key: &TokenHash) -> u64 {
    u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ])
}

fn shard_bits(key: &TokenHash) -> usize {
    usize::from(u16::from_le_bytes([key[8], key[9]]))
}

// === impl Slot ===

impl Slot {
    fn new(key: TokenHash, cached: Cached, expires: u64) -> Self {
        Self {
            key,
            identity: cached.identity,
            exp: cached.exp.unwrap_or(NO_EXP),
            expires: expires & !REFERENCED,
            checked: cached.checked,
        }
    }

    fn expired(&self, now: u64) -> bool {
        self.expires & !REFERENCED <= now
    }

    fn cached(&self) -> Cached {
        Cached {
            identity: self.identity.clone(),
            exp: (self.exp != NO_EXP).then_some(self.exp),
            checked: self.checked,
        }
    }
}

// === impl Shard ===

impl Shard {
    fn find(&self, key: &TokenHash) -> Option<usize> {
        self.index
            .find(slot_hash(key), |&i| self.slots[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    /// Removes slot `i`: the last slot moves into its place.
    fn remove_at(&mut self, i: usize) {
        let key = self.slots[i].key;
        if let Ok(entry) = self.index.find_entry(slot_hash(&key), |&j| j as usize == i) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        if i != last {
            let moved = slot_hash(&self.slots[i].key);
            if let Some(j) = self.index.find_mut(moved, |&j| j as usize == last) {
                *j = i as u32;
            }
        }
    }

    /// CLOCK: the slot to reuse (see the module comment), or `None` when the shard is empty.
    fn victim(&mut self, now: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        // Ends within two sweeps: the first clears every bit it passes.
        loop {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.expired(now) || slot.expires & REFERENCED == 0 {
                let i = self.hand;
                self.hand += 1;
                return Some(i);
            }
            slot.expires &= !REFERENCED;
            self.hand += 1;
        }
    }

    /// Puts `slot` in place of slot `i`.
    fn replace(&mut self, i: usize, slot: Slot) {
        let old = slot_hash(&self.slots[i].key);
        if let Ok(entry) = self.index.find_entry(old, |&j| j as usize == i) {
            entry.remove();
        }
        let hash = slot_hash(&slot.key);
        self.slots[i] = slot;
        let slots = &self.slots;
        self.index
            .insert_unique(hash, i as u32, |&j| slot_hash(&slots[j as usize].key));
    }

    /// Adds `slot` as a new slot.
    fn push(&mut self, slot: Slot, expected: usize) {
        if self.slots.len() == self.slots.capacity() {
            // Double, but not far past what this shard is expected to hold.
            let len = self.slots.len();
            let want = (len * 2).min(expected).max(len + len / 8 + 16);
            self.slots.reserve_exact(want - len);
        }
        let hash = slot_hash(&slot.key);
        let i = self.slots.len() as u32;
        self.slots.push(slot);
        let slots = &self.slots;
        self.index
            .insert_unique(hash, i, |&j| slot_hash(&slots[j as usize].key));
    }

    fn forget_flight(&mut self, key: &TokenHash) {
        if let Ok(entry) = self.flights.find_entry(slot_hash(key), |(k, _)| k == key) {
            entry.remove();
        }
    }
}

// === impl Table ===

impl Table {
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        // Small tables get fewer shards, so no shard is left to hold a handful.
        let shards = (capacity / 256).clamp(1, SHARDS).next_power_of_two();
        let per_shard = capacity / shards;
        Self {
            shards: (0..shards)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            mask: shards - 1,
            capacity,
            len: AtomicUsize::new(0),
            expected: per_shard.saturating_add(per_shard / 16).saturating_add(16),
            epoch: Instant::now(),
        }
    }

    /// Now, in µs since the table's epoch.
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `instant` in µs since the table's epoch (a caller that has just read the clock for
    /// its own reasons passes that reading instead of reading it again: ~50 ns on a VM).
    pub fn at(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.epoch);
        u64::try_from(since.as_micros()).unwrap_or(u64::MAX >> 1)
    }

    fn shard(&self, key: &TokenHash) -> &Mutex<Shard> {
        &self.shards[shard_bits(key) & self.mask].0
    }

    /// The entry for `key` unless it expired by `now` (then it is removed); on a miss, the
    /// flight for `key`, joined or started, so that a miss never races an insert.
    pub fn lookup(&self, key: &TokenHash, now: u64) -> Lookup {
        let mut shard = self.shard(key).lock();
        if let Some(i) = shard.find(key) {
            let slot = &mut shard.slots[i];
            if !slot.expired(now) {
                slot.expires |= REFERENCED;
                return Lookup::Hit(slot.cached());
            }
            shard.remove_at(i);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        let hash = slot_hash(key);
        if let Some((_, flight)) = shard.flights.find(hash, |(k, _)| k == key) {
            return Lookup::Miss(flight.clone());
        }
        let flight = Arc::new(Flight {
            outcome: tokio::sync::OnceCell::new(),
            generation: shard.generation,
        });
        shard
            .flights
            .insert_unique(hash, (*key, flight.clone()), |(k, _)| slot_hash(k));
        Lookup::Miss(flight)
    }

    /// Ends `flight` (when it is still the one for `key`) and caches its answer, unless the
    /// shard saw an invalidation since the flight started or the answer is already expired.
    pub fn land(
        &self,
        key: &TokenHash,
        flight: &Arc<Flight>,
        answer: Option<(Cached, u64)>,
        now: u64,
    ) {
        let victim_elsewhere = {
            let mut shard = self.shard(key).lock();
            let hash = slot_hash(key);
            if let Ok(entry) = shard
                .flights
                .find_entry(hash, |(k, f)| k == key && Arc::ptr_eq(f, flight))
            {
                entry.remove();
            }
            match answer {
                Some((cached, expires)) if shard.generation == flight.generation => {
                    self.put(&mut shard, key, cached, expires, now)
                }
                _ => false,
            }
        };
        if victim_elsewhere {
            self.evict_elsewhere(key);
        }
    }

    /// A caller of `flight` is leaving: the last one forgets a flight nobody finished (its
    /// callers were all dropped), so the next miss starts a new one.
    pub fn leave(&self, key: &TokenHash, flight: &Arc<Flight>) {
        if flight.outcome.initialized() {
            return;
        }
        let mut shard = self.shard(key).lock();
        // Clones are made under this lock only, so two means the map's and the caller's.
        if Arc::strong_count(flight) == 2 {
            if let Ok(entry) = shard
                .flights
                .find_entry(slot_hash(key), |(k, f)| k == key && Arc::ptr_eq(f, flight))
            {
                entry.remove();
            }
        }
    }

    /// Caches `cached` under `key` until `expires` (µs since the epoch), replacing what is
    /// there. An answer already expired is not kept (and still replaces what is there).
    pub fn insert(&self, key: &TokenHash, cached: Cached, expires: u64, now: u64) {
        let victim_elsewhere = {
            let mut shard = self.shard(key).lock();
            self.put(&mut shard, key, cached, expires, now)
        };
        if victim_elsewhere {
            self.evict_elsewhere(key);
        }
    }

    /// Puts the entry in `shard` (an expired one only removes what is there). True when the
    /// table is over its bound and this shard had nothing to evict: the caller then evicts
    /// from another shard (after unlocking this one, so no two shard locks are ever held
    /// together).
    fn put(
        &self,
        shard: &mut Shard,
        key: &TokenHash,
        cached: Cached,
        expires: u64,
        now: u64,
    ) -> bool {
        let found = shard.find(key);
        if expires <= now {
            if let Some(i) = found {
                shard.remove_at(i);
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
            return false;
        }
        let slot = Slot::new(*key, cached, expires);
        if let Some(i) = found {
            shard.slots[i] = slot;
            return false;
        }
        if self.capacity == 0 {
            return false;
        }
        if self.len.fetch_add(1, Ordering::Relaxed) < self.capacity {
            shard.push(slot, self.expected);
            return false;
        }
        match shard.victim(now) {
            Some(i) => {
                shard.replace(i, slot);
                self.len.fetch_sub(1, Ordering::Relaxed);
                false
            }
            None => {
                shard.push(slot, self.expected);
                true
            }
        }
    }

    /// Evicts one entry from the first other shard that has one.
    fn evict_elsewhere(&self, key: &TokenHash) {
        let home = shard_bits(key) & self.mask;
        for step in 1..self.shards.len() {
            let mut shard = self.shards[(home + step) & self.mask].0.lock();
            let now = self.now();
            if let Some(i) = shard.victim(now) {
                shard.remove_at(i);
                self.len.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Drops the entry for `key`, and its flight: a request after this starts a new call,
    /// and the flight in progress (which may have read the store before the invalidation)
    /// does not cache its answer.
    pub fn remove(&self, key: &TokenHash) {
        let mut shard = self.shard(key).lock();
        shard.generation += 1;
        shard.forget_flight(key);
        if let Some(i) = shard.find(key) {
            shard.remove_at(i);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops every entry and every flight (as [`Table::remove`] does one).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            shard.generation += 1;
            shard.flights.clear();
            let n = shard.slots.len();
            shard.slots.clear();
            shard.index.clear();
            shard.hand = 0;
            self.len.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Entries not expired by `now`.
    pub fn live(&self, now: u64) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.0.lock();
                shard.slots.iter().filter(|s| !s.expired(now)).count() as u64
            })
            .sum()
    }

    /// Entries held, expired ones not yet reclaimed included (never above the capacity
    /// once no insert is under way).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().slots.len()).sum()
    }
}

#[cfg(test)]
mod tests;
