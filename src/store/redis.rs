//! The Redis store: what several tollgate instances share so that they act as one
//! authorization server, on one Redis, a Sentinel-watched master, or a Cluster (see
//! [`connect`] for how each is reached).
//!
//! Keys, all under `[oauth] store_prefix` (`P`, default `tollgate:`), every one with a Redis
//! TTL equal to the remaining life of what it holds, so Redis itself forgets expired records
//! and `sweep` has nothing to do:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P{GRANT}:r:HASH` | hash | one record: `s` its state, `d` the record as JSON |
//! | `P{GRANT}:g` | set | the hashes of a grant's records (lives as long as the longest) |
//! | `P:h:HASH` | string | the grant a hash belongs to (never changes once written) |
//! | `P:f:KEY` | sorted set | login failures of `KEY`, scored by time (kept a day) |
//! | `P:b:KEY` | string | the end of `KEY`'s ban (expires with it) |
//! | `P:k:NAME` | string | a server key (no TTL: never swept) |
//! | `P:d:KEY` | string | a spent DPoP proof id (`dpop::replay`), until its proof is stale |
//! | `P:revocations` | stream | the revocation stream (see [`stream`]) |
//!
//! One grant's keys share the hash tag `{GRANT}`, so they live in one Cluster slot and the
//! Lua scripts that change them (`consume`, `revoke`, `revoke_grant`) are atomic: two
//! instances can never both redeem one code or both rotate one refresh token. Every script
//! touches the keys of one slot only, except `GET`, which is not used on a Cluster. The
//! index `P:h:HASH` finds a hash's grant, in another slot. Round trips per call:
//!
//! | call | standalone, Sentinel | Cluster |
//! |---|---|---|
//! | `get` (a cold verification) | 1: one script reads index and record | 2: the index, then the record |
//! | `insert` | 1: one `MULTI` (record, grant set, index) | 2: one `MULTI` on the grant's slot (record, grant set), then the index |
//! | `consume`, `revoke` | 2: the index, then one script (+1 `XADD` for a revocation) | the same |
//! | `revoke_grant` | 1 script + 1 `XADD` | the same |
//! | `delete` | 2: the index, then one `MULTI` | 3: the index, its deletion, then one `MULTI` on the grant's slot |
//! | failures, bans, server keys | 1 | 1 |
//!
//! On a Cluster the record is written before the index, so a reader that finds the index
//! finds a record that is already in its grant's set (a `revoke_grant` that could miss it
//! has not happened yet); an index written without its record (the second step failed)
//! finds nothing and expires. `delete` removes the index first, for the same reason.
//!
//! Revocations made here reach this process's guard through the in-process feed before the
//! call returns, as with the other stores, and every other instance through the revocation
//! stream `P:revocations` (see [`stream`]), which each instance reads on a connection of its
//! own.

use super::{LocalFeed, Record, RecordState, RevocationFeed, RevocationSink, StoreError};
use super::{StoreResult, TokenHash, TokenStore, FAILURE_RETENTION_SECS};
use crate::config::RedisSpec;
use connect::{Conn, Connector};
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

mod connect;
mod scripts;
mod sentinel;
mod stream;
use scripts::{ADD_FAILURE, GET, REVOKE_GRANT, SERVER_KEY, TRANSITION};
use stream::RevocationStream;

/// How long connecting may take before a call fails (and `/oauth/*` answers 503). After one
/// such failure calls fail at once for a moment (`store::fail_fast`), so an outage costs
/// one request this wait, not every request.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long one command may take before a call fails. Redis answers ours in well under a
/// millisecond; one that takes this long is as good as down.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(400);

/// A Redis-backed [`TokenStore`].
pub struct RedisStore {
    conn: Conn,
    /// On a Cluster, calls that span slots are split (see the module comment).
    cluster: bool,
    keys: Keys,
    /// This process's subscribers; the stream reader holds it weakly and stops with it.
    feed: Arc<LocalFeed>,
    stream: RevocationStream,
}

/// Key names under the prefix (see the module comment).
#[derive(Clone)]
struct Keys {
    prefix: String,
}

// === impl Keys ===

impl Keys {
    fn index(&self, hex: &str) -> String {
        format!("{}h:{hex}", self.prefix)
    }

    /// `P{GRANT}:r:`, the start of every record key of a grant.
    fn records_of(&self, grant: &str) -> String {
        format!("{}{{{grant}}}:r:", self.prefix)
    }

    fn record(&self, grant: &str, hex: &str) -> String {
        format!("{}{hex}", self.records_of(grant))
    }

    fn grant(&self, grant: &str) -> String {
        format!("{}{{{grant}}}:g", self.prefix)
    }

    fn failures(&self, key: &str) -> String {
        format!("{}f:{key}", self.prefix)
    }

    fn ban(&self, key: &str) -> String {
        format!("{}b:{key}", self.prefix)
    }

    fn server_key(&self, name: &str) -> String {
        format!("{}k:{name}", self.prefix)
    }

    fn proof_id(&self, key: &[u8; 32]) -> String {
        let mut name = format!("{}d:", self.prefix);
        for b in key {
            let _ = write!(name, "{b:02x}");
        }
        name
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// Connects to the Redis `spec` names; fails if it cannot be reached now.
    pub async fn open(spec: &RedisSpec) -> StoreResult<Self> {
        let connector = Connector::new(spec)?;
        let mut conn = connector.commands().await?;
        let stream = RevocationStream::new(&spec.prefix);
        // Read from the newest entry now: nothing revoked after `open` returns is missed.
        let last = stream.last_id(&mut conn).await?;
        let feed = Arc::new(LocalFeed::default());
        feed.share();
        let cluster = connector.is_cluster();
        tokio::spawn(stream.clone().read(connector, Arc::downgrade(&feed), last));
        Ok(Self {
            conn,
            cluster,
            keys: Keys {
                prefix: spec.prefix.clone(),
            },
            feed,
            stream,
        })
    }

    /// Tells this process's guard, then every other instance, that `hashes` are revoked.
    async fn announce(&self, hashes: &[TokenHash]) -> StoreResult<()> {
        self.feed.publish_tokens(hashes).await;
        self.stream.publish(&mut self.conn(), hashes).await
    }

    fn conn(&self) -> Conn {
        // A handle onto the one multiplexed connection; cloning it is cheap.
        self.conn.clone()
    }

    /// The grant `hash` belongs to, from the index.
    async fn grant_of(&self, hex: &str) -> StoreResult<Option<String>> {
        Ok(self.conn().get(self.keys.index(hex)).await?)
    }

    /// Runs [`TRANSITION`] on the record under `hash`.
    async fn transition(
        &self,
        hash: TokenHash,
        to: RecordState,
        any: bool,
    ) -> StoreResult<Option<Record>> {
        let hex = hex(&hash);
        let Some(grant) = self.grant_of(&hex).await? else {
            return Ok(None);
        };
        let found: Option<(String, String)> = TRANSITION
            .key(self.keys.record(&grant, &hex))
            .arg(state_str(to))
            .arg(if any { "any" } else { "active" })
            .invoke_async(&mut self.conn())
            .await?;
        found.map(|(s, d)| decode(&s, &d)).transpose()
    }
}

impl TokenStore for RedisStore {
    fn insert(&self, hash: TokenHash, record: Record) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let hex = hex(&hash);
            let ttl = record.expires_at.saturating_sub(record.issued_at).max(1) as i64;
            let data = serde_json::to_string(&record)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode a record: {e}")))?;
            let key = self.keys.record(&record.grant_id, &hex);
            let grant = self.keys.grant(&record.grant_id);
            let index = self.keys.index(&hex);
            // All or nothing; the grant set lives as long as its longest record (NX sets a
            // first TTL, GT only ever extends it).
            let mut pipe = redis::pipe();
            pipe.atomic()
                .del(&key)
                .ignore()
                .hset_multiple(&key, &[("s", state_str(record.state)), ("d", &data)])
                .ignore()
                .expire(&key, ttl)
                .ignore()
                .sadd(&grant, &hex)
                .ignore()
                .cmd("EXPIRE")
                .arg(&grant)
                .arg(ttl)
                .arg("NX")
                .ignore()
                .cmd("EXPIRE")
                .arg(&grant)
                .arg(ttl)
                .arg("GT")
                .ignore();
            if self.cluster {
                // The index is in another slot: written after the record (module comment).
                let _: () = pipe.query_async(&mut self.conn()).await?;
                let _: () = self
                    .conn()
                    .set_ex(index, &record.grant_id, ttl as u64)
                    .await?;
            } else {
                let _: () = pipe
                    .set_ex(index, &record.grant_id, ttl as u64)
                    .ignore()
                    .query_async(&mut self.conn())
                    .await?;
            }
            Ok(())
        })
    }

    fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(async move {
            let hex = hex(&hash);
            let found: Option<(Option<String>, Option<String>)> = if self.cluster {
                // The script would read a key of another slot: two round trips instead.
                match self.grant_of(&hex).await? {
                    Some(grant) => Some(
                        redis::cmd("HMGET")
                            .arg(self.keys.record(&grant, &hex))
                            .arg("s")
                            .arg("d")
                            .query_async(&mut self.conn())
                            .await?,
                    ),
                    None => None,
                }
            } else {
                GET.key(self.keys.index(&hex))
                    .arg(&self.keys.prefix)
                    .arg(&hex)
                    .invoke_async(&mut self.conn())
                    .await?
            };
            match found {
                Some((Some(s), Some(d))) => decode(&s, &d).map(Some),
                // The index outlived the record by a moment, or there is neither.
                _ => Ok(None),
            }
        })
    }

    fn consume(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(self.transition(hash, RecordState::Used, false))
    }

    fn revoke(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(async move {
            let before = self.transition(hash, RecordState::Revoked, true).await?;
            if before.is_some() {
                self.announce(&[hash]).await?;
            }
            Ok(before)
        })
    }

    fn revoke_grant<'a>(&'a self, grant_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<TokenHash>>> {
        Box::pin(async move {
            let revoked: Vec<String> = REVOKE_GRANT
                .key(self.keys.grant(grant_id))
                .arg(self.keys.records_of(grant_id))
                .invoke_async(&mut self.conn())
                .await?;
            let hashes = revoked
                .iter()
                .map(|h| unhex(h))
                .collect::<StoreResult<Vec<_>>>()?;
            self.announce(&hashes).await?;
            Ok(hashes)
        })
    }

    fn delete(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let hex = hex(&hash);
            let Some(grant) = self.grant_of(&hex).await? else {
                return Ok(());
            };
            let index = self.keys.index(&hex);
            let mut pipe = redis::pipe();
            pipe.atomic();
            if self.cluster {
                // Unfindable first, then gone (module comment).
                let _: () = self.conn().del(&index).await?;
            } else {
                pipe.del(&index).ignore();
            }
            let _: () = pipe
                .del(self.keys.record(&grant, &hex))
                .ignore()
                .srem(self.keys.grant(&grant), &hex)
                .ignore()
                .query_async(&mut self.conn())
                .await?;
            Ok(())
        })
    }

    fn sweep(&self, _now: u64) -> BoxFuture<'_, StoreResult<u64>> {
        // Every key carries its own TTL: Redis deletes what has expired.
        Box::pin(async { Ok(0) })
    }

    fn add_failure<'a>(
        &'a self,
        key: &'a str,
        at: u64,
        since: u64,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        Box::pin(async move {
            // Two failures in one second are two members: each gets a random suffix.
            let member = format!("{at}:{:016x}", rand::random::<u64>());
            let count: u32 = ADD_FAILURE
                .key(self.keys.failures(key))
                .arg(at)
                .arg(member)
                .arg(since)
                .arg(at.saturating_sub(FAILURE_RETENTION_SECS))
                .arg(FAILURE_RETENTION_SECS)
                .invoke_async(&mut self.conn())
                .await?;
            Ok(count)
        })
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let _: () = self.conn().del(self.keys.failures(key)).await?;
            Ok(())
        })
    }

    fn ban<'a>(&'a self, key: &'a str, until: u64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            // The key expires when the ban ends (at once if `until` is past).
            let _: () = redis::cmd("SET")
                .arg(self.keys.ban(key))
                .arg(until)
                .arg("EXAT")
                .arg(until.max(1))
                .query_async(&mut self.conn())
                .await?;
            Ok(())
        })
    }

    fn banned_until<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        Box::pin(async move { Ok(self.conn().get(self.keys.ban(key)).await?) })
    }

    fn server_key<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<[u8; 32]>> {
        Box::pin(async move {
            let stored: Vec<u8> = SERVER_KEY
                .key(self.keys.server_key(name))
                .arg(&candidate[..])
                .invoke_async(&mut self.conn())
                .await?;
            <[u8; 32]>::try_from(stored.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("server key {name:?} is not 32 bytes")))
        })
    }

    fn spend_proof_id(&self, key: [u8; 32], ttl_secs: u64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            // `SET NX` answers OK to the first writer and nil to everyone after it.
            let set: Option<String> = redis::cmd("SET")
                .arg(self.keys.proof_id(&key))
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl_secs.max(1))
                .query_async(&mut self.conn())
                .await?;
            Ok(set.is_some())
        })
    }

    fn shares_proof_ids(&self) -> bool {
        true
    }
}

impl RevocationFeed for RedisStore {
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

fn state_str(s: RecordState) -> &'static str {
    match s {
        RecordState::Active => "active",
        RecordState::Used => "used",
        RecordState::Revoked => "revoked",
    }
}

/// A record from its state field and JSON; the state field wins (the scripts change only it).
fn decode(state: &str, data: &str) -> StoreResult<Record> {
    let record: Record =
        serde_json::from_str(data).map_err(|e| StoreError::Corrupt(format!("record JSON: {e}")))?;
    let state = match state {
        "active" => RecordState::Active,
        "used" => RecordState::Used,
        "revoked" => RecordState::Revoked,
        other => return Err(StoreError::Corrupt(format!("unknown state {other:?}"))),
    };
    Ok(Record { state, ..record })
}

fn hex(hash: &TokenHash) -> String {
    let mut s = String::with_capacity(64);
    for b in hash {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> StoreResult<TokenHash> {
    let bad = || StoreError::Corrupt(format!("{s:?} is not a token hash"));
    if s.len() != 64 || !s.is_ascii() {
        return Err(bad());
    }
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(hash)
}

#[cfg(test)]
mod tests;
