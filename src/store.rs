//! The token database behind the [`TokenStore`] trait: authorization codes, access and
//! refresh tokens, and login sessions, each kept under the SHA-256 of its secret value
//! (the value itself is never stored).
//!
//! Every record belongs to a *grant*: the chain of codes and tokens that one user approval
//! (or one client_credentials/password request) started. Revoking a grant revokes the whole
//! chain, which is how code replay and refresh-token reuse are answered (RFC 9700 §2.2.2,
//! §4.14). The trait is small on purpose so that a Redis implementation maps one-to-one:
//! `insert` is a SET with TTL, `consume` an atomic compare-and-set, `revoke_grant` a walk of
//! a per-grant set, `server_key` a SET NX then GET.
//!
//! A grant has an absolute end (`[oauth] grant_max_lifetime` after the user authorized)
//! that rotation never moves. Every record of the grant carries it (`grant_expires_at`), so
//! one record read answers "is this grant over?" and a store keeps one grant's records
//! together without a separate grants table.
//!
//! Revocations leave the store on its [`RevocationFeed`]: the store publishes every hash it
//! revokes, and guards subscribe (see `feed`). The authorization server only writes to the
//! store; it never reaches into a guard's cache.

pub mod fail_fast;
pub mod feed;
pub mod memory;
pub mod redis;
pub mod sqlite;

use crate::config::StoreSpec;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub use feed::{LocalFeed, RevocationFeed, RevocationSink, Revoked};

/// SHA-256 of a token: the store's key for it (and the guard cache's).
pub type TokenHash = [u8; 32];

/// Hashes a token the way the store and the guard's cache key it.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Code,
    Access,
    Refresh,
    Session,
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Active,
    /// A single-use record (code, refresh token) that has been used once.
    Used,
    Revoked,
}

/// One code, token or session. Fields a kind does not use stay empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kind: RecordKind,
    pub state: RecordState,
    /// The grant this record belongs to (for sessions: the session's own id).
    pub grant_id: String,
    pub client_id: String,
    /// User login name, or the client id for client_credentials tokens.
    pub sub: String,
    /// Set for tokens issued to a user; absent for client_credentials.
    pub username: Option<String>,
    pub scopes: Vec<String>,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    pub expires_at: u64,
    /// When the grant this record belongs to ends, however often it rotates (seconds since
    /// the epoch). A record never outlives it: `expires_at <= grant_expires_at`.
    pub grant_expires_at: u64,
    /// Codes: the redirect URI the authorization request named (None if it named none).
    pub redirect_uri: Option<String>,
    /// Codes: the PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// Sessions: the user's display name and email, for the consent page.
    pub name: Option<String>,
    pub email: Option<String>,
    /// Sessions: the CSRF token every form of this session carries.
    pub csrf: Option<String>,
    /// Sessions: the SHA-256 (base64url) of the browser id in the pre-login cookie; the
    /// session is honoured only together with that cookie (see `oauth::session`).
    pub browser: Option<String>,
    /// Codes, tokens: the RFC 8707 resources the token is for (its `aud`); empty when the
    /// request named none, and the token's audience is then the issuer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Codes, tokens: the RFC 7638 thumbprint of the DPoP key the token is bound to
    /// (RFC 9449 `cnf.jkt`); a refresh token's binding passes to the tokens it issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Record {
    /// True when the record may still be used at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.state == RecordState::Active && self.expires_at > now
    }
}

/// Why the store could not do what was asked. Always our fault (500/503), never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token store stayed busy for {waited:?}")]
    Busy { waited: std::time::Duration },
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the store's worker thread failed")]
    Worker(#[from] tokio::task::JoinError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("the token store could not be reached moments ago; trying again in {hold:?}")]
    Unavailable { hold: std::time::Duration },
    #[error("cannot start a SQLite store thread: {0}")]
    ThreadStart(std::io::Error),
    #[error("a SQLite store thread has stopped")]
    ThreadStopped,
}

// === impl StoreError ===

impl StoreError {
    /// True when the store could not be reached at all (refused, timed out, link dropped),
    /// as opposed to answering with an error: what [`fail_fast::FailFast`] holds down for.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
            }
            StoreError::Unavailable { .. } => true,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The token database. All methods are cheap to call concurrently; implementations keep
/// blocking IO off the async workers. Every store is also a [`RevocationFeed`]: `revoke`
/// and `revoke_grant` return only after the revoked hashes have been handed to this
/// process's subscribers, so revocation takes effect here at once.
pub trait TokenStore: RevocationFeed + Send + Sync + 'static {
    /// Stores a record under `hash` (replacing any record there).
    fn insert(&self, hash: TokenHash, record: Record) -> BoxFuture<'_, StoreResult<()>>;

    /// The record under `hash`, whatever its state, unless it has been swept.
    fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>>;

    /// Atomically marks an `Active` record `Used` and returns it as it was *before*; so
    /// exactly one caller ever sees `Active` for a single-use record.
    fn consume(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>>;

    /// Marks one record revoked and publishes it on the feed; returns it as it was before.
    fn revoke(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>>;

    /// Revokes every record of a grant and publishes their hashes on the feed; returns the
    /// hashes it revoked.
    fn revoke_grant<'a>(&'a self, grant_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<TokenHash>>>;

    /// Removes a record (sessions at logout).
    fn delete(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<()>>;

    /// Deletes records that expired before `now`, failures older than a day and bans that
    /// ended; returns how many records it deleted.
    fn sweep(&self, now: u64) -> BoxFuture<'_, StoreResult<u64>>;

    /// Notes one failed login for `key` (e.g. `user:alice`, `ip:10.0.0.1`) at `at` and
    /// returns how many failures `key` has at or after `since` (a sliding window).
    fn add_failure<'a>(
        &'a self,
        key: &'a str,
        at: u64,
        since: u64,
    ) -> BoxFuture<'a, StoreResult<u32>>;

    /// Forgets `key`'s failures (after a successful login).
    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>>;

    /// Refuses `key` until `until` (seconds since the epoch).
    fn ban<'a>(&'a self, key: &'a str, until: u64) -> BoxFuture<'a, StoreResult<()>>;

    /// When `key`'s ban ends, if it has one (it may be in the past).
    fn banned_until<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>>;

    /// The server key stored under `name`, storing `candidate` first when there is none.
    /// Atomic: however many instances race, all of them get the same key back. Keys are
    /// never swept.
    fn server_key<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<[u8; 32]>>;

    /// Spends the id of a DPoP proof (`dpop::replay`): `true` when no instance sharing this
    /// store spent it in the last `ttl_secs`, which it is then remembered for. Stores that
    /// one process owns (memory) answer `true`: the process's own set of spent ids is
    /// all there is to ask.
    fn spend_proof_id(&self, _key: [u8; 32], _ttl_secs: u64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async { Ok(true) })
    }

    /// True when other processes share this store and [`Self::spend_proof_id`] answers
    /// for all of them.
    fn shares_proof_ids(&self) -> bool {
        false
    }
}

/// Failures older than this are swept whatever the configured window.
pub const FAILURE_RETENTION_SECS: u64 = 24 * 3600;

/// Opens the store the config names (for Redis: connects, and fails if it cannot).
pub async fn open(spec: &StoreSpec) -> StoreResult<Arc<dyn TokenStore>> {
    match spec {
        StoreSpec::Memory => Ok(Arc::new(memory::MemoryStore::default())),
        StoreSpec::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path)?)),
        // Boxed: the Sentinel and Cluster connection futures are deep, and the callers'
        // futures (start-up) would otherwise carry their whole layout.
        StoreSpec::Redis(redis) => Ok(Arc::new(fail_fast::FailFast::new(
            Box::pin(redis::RedisStore::open(redis)).await?,
        ))),
    }
}

#[cfg(test)]
pub mod conformance;
