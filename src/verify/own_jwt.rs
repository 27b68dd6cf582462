//! The local verifier's path for tollgate's own JWT access tokens (`[oauth] token_format =
//! "jwt"`): signature and claims, with no store lookup, and revocation still honoured.
//!
//! A JWT is checked against the configured keys (the current one or a previous one, by
//! `kid`), its `typ` must be `at+jwt`, its `alg` the key's own, its `iss` `[oauth] issuer`,
//! `exp` in the future, `nbf`/`iat` not (30 s leeway). Revocation reaches this process as
//! token hashes on the store's feed; they go into a deny set kept for
//! `access_token_ttl` (+ a margin for clock skew between instances) after they arrive. A
//! token lives at most `access_token_ttl` from its `iat`, and is revoked after its `iat`,
//! so its hash is still denied until its `exp`: memory is bounded by the revocations of one
//! token lifetime, whatever the number of tokens.
//!
//! When the deny set may be incomplete, the token is also looked up in the store, exactly
//! as an opaque one (and a store outage is answered the same way, by `when_store_down`):
//! - for `access_token_ttl` after start (a store shared with other instances, or kept across
//!   restarts, may hold revocations made before this process was listening), unless the
//!   store is in memory (then nothing revoked can predate the process);
//! - for `access_token_ttl` after the feed reported [`Revoked::Everything`] (revocations
//!   may have been missed; none can matter after every token alive then has expired);
//! - while the feed's shared channel has been silent longer than `[verify] max_stale`
//!   (another instance's revocation may be in flight), the rule opaque tokens follow too;
//! - for a token whose lifetime is longer than `access_token_ttl` (issued under a longer
//!   setting): the deny set would forget its revocation before its `exp`.

use super::Principal;
use crate::clock::Clock;
use crate::jwt::claims::{self, Checked};
use crate::jwt::{ClaimRules, Refusal, SigningKeys};
use crate::store::{Revoked, TokenHash};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Seconds an `nbf` or `iat` of our own tokens may be ahead of this clock (other instances).
const LEEWAY_SECS: u64 = 30;

/// Extra seconds a revoked hash is denied, for clock skew between instances.
const DENY_MARGIN_SECS: u64 = 60;

/// How tollgate's own JWTs are checked (see the module comment).
pub struct OwnJwt {
    keys: Arc<SigningKeys>,
    rules: ClaimRules,
    /// `[oauth] access_token_ttl` in seconds: the longest life of a token we issue.
    max_life: u64,
    max_stale: Duration,
    clock: Arc<dyn Clock>,
    deny: DenySet,
    /// Until when (Unix seconds) every JWT is also looked up in the store.
    store_checks_until: AtomicU64,
}

/// What the signature and claims say of a token, before revocation is considered.
pub enum Opened {
    Valid { checked: Checked, needs_store: bool },
    Refused(Refusal),
    Revoked,
}

/// Hashes of revoked tokens, each until its token has surely expired.
#[derive(Default)]
struct DenySet {
    inner: Mutex<DenyInner>,
}

#[derive(Default)]
struct DenyInner {
    until: HashMap<TokenHash, u64>,
    /// Expired entries are dropped when the map reaches this size.
    prune_at: usize,
}

// === impl OwnJwt ===

impl OwnJwt {
    /// `store_checks_at_start`: whether the store may hold revocations made before this
    /// process started (see the module comment).
    pub fn new(
        keys: Arc<SigningKeys>,
        issuer: String,
        access_token_ttl: Duration,
        max_stale: Duration,
        clock: Arc<dyn Clock>,
        store_checks_at_start: bool,
    ) -> OwnJwt {
        let max_life = access_token_ttl.as_secs();
        let own = OwnJwt {
            keys,
            rules: ClaimRules {
                issuer,
                leeway: LEEWAY_SECS,
            },
            max_life,
            max_stale,
            clock,
            deny: DenySet::default(),
            store_checks_until: AtomicU64::new(0),
        };
        if store_checks_at_start {
            own.check_store_for_a_lifetime();
        }
        own
    }

    /// Checks `token`'s signature and claims and whether it was revoked. `feed_silent` is the
    /// feed's [`crate::store::RevocationFeed::silent_for`].
    pub fn open(&self, token: &str, hash: &TokenHash, feed_silent: Option<Duration>) -> Opened {
        let now = self.clock.now_unix();
        let checked = match self.check(token, now) {
            Ok(c) => c,
            Err(refusal) => return Opened::Refused(refusal),
        };
        if self.deny.contains(hash, now) {
            return Opened::Revoked;
        }
        let outlives_deny = checked
            .iat
            .is_none_or(|iat| checked.exp.saturating_sub(iat) > self.max_life);
        let needs_store = now < self.store_checks_until.load(Ordering::Relaxed)
            || feed_silent.is_some_and(|s| s > self.max_stale)
            || outlives_deny;
        Opened::Valid {
            checked,
            needs_store,
        }
    }

    fn check(&self, token: &str, now: u64) -> Result<Checked, Refusal> {
        let (jws, alg) = claims::open(token)?;
        let kid = jws.header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
        let key = self.keys.find(kid).ok_or(Refusal::UnknownKey)?;
        claims::check_signature(&jws, alg, key)?;
        self.rules.check(&jws.payload, now)
    }

    /// Acts on a revocation from the feed.
    pub fn revoked(&self, event: &Revoked) {
        match event {
            Revoked::Token(hash) => {
                let until = self.clock.now_unix() + self.max_life + DENY_MARGIN_SECS;
                self.deny.insert(*hash, until, self.clock.now_unix());
            }
            Revoked::Everything => self.check_store_for_a_lifetime(),
        }
    }

    fn check_store_for_a_lifetime(&self) {
        let until = self.clock.now_unix() + self.max_life + DENY_MARGIN_SECS;
        self.store_checks_until.fetch_max(until, Ordering::Relaxed);
    }

    /// How many revoked hashes are held (for tests of the memory bound).
    pub fn denied_count(&self) -> usize {
        self.deny.lock().until.len()
    }
}

/// The principal of a checked token.
pub fn principal(checked: Checked) -> Option<Principal> {
    Principal::new(
        checked.sub,
        checked.client_id,
        checked.username,
        checked.scopes,
        Some(checked.exp),
    )
    .map(|p| p.with_audiences(checked.audiences).with_jkt(checked.jkt))
}

// === impl DenySet ===

impl DenySet {
    fn lock(&self) -> std::sync::MutexGuard<'_, DenyInner> {
        // A panic while holding the lock leaves a valid map behind: poison is harmless.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn contains(&self, hash: &TokenHash, now: u64) -> bool {
        self.lock()
            .until
            .get(hash)
            .is_some_and(|until| *until > now)
    }

    fn insert(&self, hash: TokenHash, until: u64, now: u64) {
        let mut inner = self.lock();
        if inner.until.len() >= inner.prune_at {
            inner.until.retain(|_, u| *u > now);
            // Amortised: the next sweep waits until the live entries have doubled.
            inner.prune_at = (inner.until.len() * 2).max(1024);
        }
        inner.until.insert(hash, until);
    }
}

#[cfg(test)]
mod tests;
