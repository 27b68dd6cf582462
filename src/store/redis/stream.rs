//! The revocation stream: how a revocation made at one instance reaches every other
//! instance sharing the Redis store (issue 9, item 3).
//!
//! Every revocation (one token, or every token of a grant) is one entry `XADD`ed to
//! `P:revocations` with the revoked hashes (`h`, comma-separated hex), the time it was made
//! (`t`, ms since the epoch) and the instance that made it (`o`). `XADD … MINID ~` trims
//! entries older than [`RETENTION`] as it goes. Each instance reads the stream on a
//! connection of its own with `XREAD BLOCK` from the last id it saw (never a blocking call on
//! the shared command connection) and hands what other instances revoked to its feed. Its
//! own entries it skips: those reached its guard before the revoking call returned.
//!
//! After a lost connection the reader resumes from its last id. If entries after that id
//! may have been trimmed away meanwhile (the oldest entry left is newer than it), or the
//! stream is gone (Redis restarted empty), it cannot know what it missed and tells its
//! subscribers to forget everything ([`Revoked::Everything`]).

use super::super::{LocalFeed, Revoked, StoreResult, TokenHash};
use super::connect::Connector;
use super::{hex, unhex};
use redis::aio::ConnectionLike;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one `XREAD` waits for entries; an empty answer after it still proves the link.
pub(super) const BLOCK: Duration = Duration::from_millis(250);
/// Entries older than this are trimmed; a reader away longer drops its cache on return.
const RETENTION: Duration = Duration::from_secs(600);
/// Most entries taken per read.
const BATCH: usize = 256;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The stream's key and this instance's name in it.
#[derive(Clone)]
pub(super) struct RevocationStream {
    key: String,
    origin: String,
}

// === impl RevocationStream ===

impl RevocationStream {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            key: format!("{prefix}revocations"),
            origin: format!("{:016x}", rand::random::<u64>()),
        }
    }

    /// Appends one revocation of `hashes` (nothing when empty).
    pub(super) async fn publish(
        &self,
        conn: &mut impl ConnectionLike,
        hashes: &[TokenHash],
    ) -> StoreResult<()> {
        if hashes.is_empty() {
            return Ok(());
        }
        let now = unix_ms();
        let oldest_kept = now.saturating_sub(RETENTION.as_millis() as u64);
        let joined: Vec<String> = hashes.iter().map(hex).collect();
        let _: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("MINID")
            .arg("~")
            .arg(oldest_kept)
            .arg("*")
            .arg("h")
            .arg(joined.join(","))
            .arg("t")
            .arg(now)
            .arg("o")
            .arg(&self.origin)
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// The id of the newest entry, `0-0` when there is none: where a new reader starts.
    pub(super) async fn last_id(&self, conn: &mut impl ConnectionLike) -> StoreResult<String> {
        let newest: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_string(), |e| e.id.clone()))
    }

    /// Reads the stream from after `last` and feeds what other instances revoked to `feed`,
    /// until the store (the feed's owner) is dropped. Reconnects by itself, on a connection
    /// of its own (to the master found anew, on Sentinel).
    pub(super) async fn read(self, connector: Connector, feed: Weak<LocalFeed>, mut last: String) {
        let mut backoff = Duration::from_millis(50);
        let mut first = true;
        let mut up = true;
        while feed.strong_count() > 0 {
            let linked = async {
                let mut conn = connector.reader().await?;
                if !first && self.missed_some(&mut conn, &last).await? {
                    if let Some(feed) = feed.upgrade() {
                        feed.publish([Revoked::Everything]).await;
                    }
                }
                Ok::<_, super::StoreError>(conn)
            }
            .await;
            first = false;
            let mut conn = match linked {
                Ok(conn) => conn,
                Err(e) => {
                    if let Some(feed) = feed.upgrade() {
                        feed.stream_up(false);
                    }
                    if std::mem::replace(&mut up, false) {
                        tracing::warn!(error = %crate::error::error_chain(&e), "revocation stream lost; reconnecting");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if !std::mem::replace(&mut up, true) {
                tracing::info!("revocation stream back");
            }
            backoff = Duration::from_millis(50);
            if let Err(e) = self.follow(&mut conn, &feed, &mut last).await {
                if let Some(feed) = feed.upgrade() {
                    feed.stream_up(false);
                }
                up = false;
                tracing::warn!(error = %crate::error::error_chain(&e), "revocation stream lost; reconnecting");
            }
        }
    }

    /// Reads until an error or until the feed is gone (then `Ok`).
    async fn follow(
        &self,
        conn: &mut (impl ConnectionLike + Send + Sync),
        feed: &Weak<LocalFeed>,
        last: &mut String,
    ) -> StoreResult<()> {
        let options = StreamReadOptions::default()
            .block(BLOCK.as_millis() as usize)
            .count(BATCH);
        loop {
            let reply: Option<StreamReadReply> = conn
                .xread_options(&[&self.key], &[last.as_str()], &options)
                .await?;
            let Some(feed) = feed.upgrade() else {
                return Ok(());
            };
            let entries: Vec<_> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            let caught_up = entries.len() < BATCH;
            for entry in entries {
                *last = entry.id.clone();
                if entry.get::<String>("o").as_deref() == Some(self.origin.as_str()) {
                    continue;
                }
                let hashes: Vec<TokenHash> = entry
                    .get::<String>("h")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|h| unhex(h).ok())
                    .collect();
                let sent_at = entry.get::<u64>("t").unwrap_or(0);
                feed.publish_remote(&hashes, sent_at).await;
            }
            // An answer, even an empty one after the block timeout, proves the link; but
            // the guard may trust its cache again only once what the answer held has been
            // delivered and nothing is left behind it (a full batch may have more).
            if caught_up {
                feed.stream_up(true);
            }
        }
    }

    /// True when entries after `last` may have been lost: trimmed, deleted, or the stream
    /// gone. Errs on the side of "yes" (that costs a cache flush, nothing more).
    pub(super) async fn missed_some(
        &self,
        conn: &mut (impl ConnectionLike + Send + Sync),
        last: &str,
    ) -> StoreResult<bool> {
        let Some(last) = parse_id(last) else {
            return Ok(true);
        };
        let exists: bool = conn.exists(&self.key).await?;
        if !exists {
            return Ok(last != (0, 0));
        }
        let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.key)
            .query_async(conn)
            .await?;
        let id_of = |field: &str| {
            info.get(field)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .and_then(|id| parse_id(&id))
        };
        // Trimming removes the oldest entries: if the oldest one left is newer than `last`,
        // entries in between may have gone (or it is simply the next one: a false alarm).
        let oldest = info
            .get("first-entry")
            .and_then(|v| redis::from_redis_value_ref::<(String, redis::Value)>(v).ok())
            .and_then(|(id, _)| parse_id(&id));
        let missed = match oldest {
            Some(oldest) => oldest > last,
            None => id_of("last-generated-id").is_some_and(|newest| newest > last),
        };
        // `XDEL` (7.0 reports it) may have removed entries from the middle.
        Ok(missed || id_of("max-deleted-entry-id").is_some_and(|deleted| deleted > last))
    }
}

/// A stream id `MS-SEQ` as a comparable pair.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        assert!(parse_id("5-0") > parse_id("4-9"));
        assert!(parse_id("5-10") > parse_id("5-9"));
        assert_eq!(parse_id("0-0"), Some((0, 0)));
        assert_eq!(parse_id("junk"), None);
    }
}
