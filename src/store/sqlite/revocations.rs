//! The revocations table: how a revocation made by one process reaches every other process
//! sharing the SQLite file (issue 9, item 5: two instances on one host, for restarts with
//! no downtime).
//!
//! Every `revoke`/`revoke_grant` appends one row per revoked hash (`hash`, `at` in ms since
//! the epoch, `origin`: the store instance that revoked) in the same transaction as the
//! revocation itself, so a revocation is on the table exactly when it is in the records.
//! Each store instance polls the table every [`POLL_EVERY`] on a read-only connection of its
//! own, from the last id it saw, and hands what other origins revoked to its feed. Its own
//! rows it skips: those reached its guard before the revoking call returned.
//!
//! Why "the last id" is a safe place to resume: SQLite has one writer at a time, and an
//! `AUTOINCREMENT` id is taken inside the writing transaction, so ids become visible in
//! order; a reader never sees id `n + 1` while `n` is still to come. `AUTOINCREMENT` also
//! keeps ids from being reused once trimmed.
//!
//! Rows older than [`RETENTION`] are trimmed (by any instance, every [`TRIM_EVERY`]), always
//! a prefix of ids, and the highest id trimmed is kept in `revocations_trimmed`. A poller
//! whose last id is below that (it stalled for longer than the retention) cannot know what
//! it missed and tells its subscribers to forget everything ([`Revoked::Everything`]).

use super::{on_blocking_pool, StoreResult, TokenHash};
use crate::store::{LocalFeed, Revoked};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the table is read: the worst case of the lag at another instance (plus one
/// read), and well inside `[verify] max_stale` (1 s by default) between proofs of life.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(100);
/// Rows older than this are trimmed; a poller away longer drops its subscribers' caches.
pub(super) const RETENTION: Duration = Duration::from_secs(600);
/// How often a poller trims.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Most rows taken per read; a full batch is followed by another read at once.
const BATCH: usize = 512;

/// The schema: the migration that adds it (see `MIGRATIONS` in `sqlite.rs`).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE revocations (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    hash   BLOB NOT NULL,
    at     INTEGER NOT NULL,
    origin INTEGER NOT NULL
);
CREATE TABLE revocations_trimmed (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    upto INTEGER NOT NULL
);
"#;

/// A new store instance's name in the table.
pub(super) fn new_origin() -> i64 {
    rand::random::<i64>()
}

/// Appends the revocation of `hashes` by `origin`; call inside the revoking transaction.
pub(super) fn append(conn: &Connection, origin: i64, hashes: &[TokenHash]) -> StoreResult<()> {
    let at = unix_ms() as i64;
    let mut stmt =
        conn.prepare_cached("INSERT INTO revocations (hash, at, origin) VALUES (?1, ?2, ?3)")?;
    for hash in hashes {
        stmt.execute(params![&hash[..], at, origin])?;
    }
    Ok(())
}

/// The id a new poller starts after: the newest row, or the newest trimmed when none is left.
/// Nothing appended after this is read is missed.
pub(super) fn newest(conn: &Connection) -> StoreResult<i64> {
    let newest: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(id) FROM revocations), 0), \
                    coalesce((SELECT upto FROM revocations_trimmed), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(newest)
}

/// One revocation read from the table: hashes revoked together by another origin.
#[derive(Debug, PartialEq, Eq)]
struct Remote {
    hashes: Vec<TokenHash>,
    /// When it was made, ms since the epoch.
    at: u64,
}

/// What one read found after the last id.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// Rows after the last id were trimmed before this read (or one was unreadable).
    missed: bool,
    /// Other origins' revocations, in order; consecutive rows of one revocation together.
    remote: Vec<Remote>,
    /// Where the next read starts.
    last: i64,
    /// The read stopped at [`BATCH`] rows: more may be waiting.
    full: bool,
}

/// Reads the rows after `last` (one snapshot: the trim mark and the rows agree).
fn read_after(conn: &mut Connection, origin: i64, last: i64) -> StoreResult<Batch> {
    let tx = conn.transaction()?;
    let trimmed: i64 = tx
        .query_row("SELECT upto FROM revocations_trimmed", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut batch = Batch {
        missed: trimmed > last,
        last: last.max(trimmed),
        ..Batch::default()
    };
    let mut rows = 0;
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, hash, at, origin FROM revocations WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut found = stmt.query(params![last, BATCH as i64])?;
        let mut group: Option<(i64, i64)> = None;
        while let Some(row) = found.next()? {
            rows += 1;
            let (id, hash, at, from): (i64, Vec<u8>, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            batch.last = id;
            if from == origin {
                group = None;
                continue;
            }
            // A row that is not a hash is a revocation this reader cannot name.
            let Ok(hash) = TokenHash::try_from(hash.as_slice()) else {
                batch.missed = true;
                continue;
            };
            match batch.remote.last_mut() {
                Some(r) if group == Some((from, at)) => r.hashes.push(hash),
                _ => batch.remote.push(Remote {
                    hashes: vec![hash],
                    at: at.max(0) as u64,
                }),
            }
            group = Some((from, at));
        }
    }
    tx.commit()?;
    batch.full = rows == BATCH;
    Ok(batch)
}

/// Deletes the rows older than [`RETENTION`] at `now_ms` (a prefix of ids: a row is kept
/// with everything after it) and raises the trim mark; returns how many it deleted.
fn trim(conn: &mut Connection, now_ms: u64) -> StoreResult<usize> {
    let cutoff = now_ms.saturating_sub(RETENTION.as_millis() as u64) as i64;
    let tx = conn.transaction()?;
    // Walks ids from the oldest and stops at the first row to keep: reads what it deletes.
    let keep_from: Option<i64> = tx
        .query_row(
            "SELECT id FROM revocations WHERE at >= ?1 ORDER BY id LIMIT 1",
            params![cutoff],
            |r| r.get(0),
        )
        .optional()?;
    let upto: Option<i64> = match keep_from {
        Some(id) => Some(id - 1),
        None => tx.query_row("SELECT max(id) FROM revocations", [], |r| r.get(0))?,
    };
    let Some(upto) = upto else {
        return Ok(0);
    };
    let deleted = tx.execute("DELETE FROM revocations WHERE id <= ?1", params![upto])?;
    if deleted > 0 {
        tx.execute(
            "INSERT INTO revocations_trimmed (only, upto) VALUES (1, ?1) \
             ON CONFLICT (only) DO UPDATE SET upto = max(upto, excluded.upto)",
            params![upto],
        )?;
    }
    tx.commit()?;
    Ok(deleted)
}

/// Reads the table for one store instance until the store (the feed's owner) is dropped.
pub(super) struct Poller {
    /// A read-only connection of the poller's own, so polls and the guard's lookups never
    /// queue behind each other.
    pub(super) reader: Arc<Mutex<Connection>>,
    /// The store's writing connection, for trimming.
    pub(super) writer: Arc<Mutex<Connection>>,
    pub(super) origin: i64,
    pub(super) feed: Weak<LocalFeed>,
    /// The last id read.
    pub(super) last: i64,
}

// === impl Poller ===

impl Poller {
    pub(super) async fn run(mut self) {
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let trimming = Arc::new(AtomicBool::new(false));
        let mut next_trim = Instant::now();
        let mut up = true;
        loop {
            tick.tick().await;
            let Some(feed) = self.feed.upgrade() else {
                return;
            };
            match self.catch_up(&feed).await {
                Ok(()) => {
                    feed.stream_up(true);
                    if !std::mem::replace(&mut up, true) {
                        tracing::info!("revocations table readable again");
                    }
                }
                Err(e) => {
                    feed.stream_up(false);
                    if std::mem::replace(&mut up, false) {
                        tracing::warn!(error = %crate::error::error_chain(&e), "cannot read the revocations table; retrying");
                    }
                }
            }
            drop(feed);
            if Instant::now() >= next_trim {
                next_trim = Instant::now() + TRIM_EVERY;
                self.spawn_trim(&trimming);
            }
        }
    }

    /// Reads until the table has nothing newer, delivering as it goes.
    async fn catch_up(&mut self, feed: &LocalFeed) -> StoreResult<()> {
        loop {
            let (origin, last) = (self.origin, self.last);
            let batch =
                on_blocking_pool(self.reader.clone(), move |c| read_after(c, origin, last)).await?;
            if batch.missed {
                tracing::warn!(
                    "revocations may have been missed (trimmed before this instance read them, \
                     or unreadable); forgetting every cached answer"
                );
                feed.publish([Revoked::Everything]).await;
            }
            for remote in &batch.remote {
                feed.publish_remote(&remote.hashes, remote.at).await;
            }
            self.last = batch.last;
            if !batch.full {
                return Ok(());
            }
        }
    }

    /// Trims on the writing connection, off the polling loop: a trim waiting for another
    /// process's lock must not delay the polls. At most one at a time.
    fn spawn_trim(&self, trimming: &Arc<AtomicBool>) {
        if trimming.swap(true, Ordering::AcqRel) {
            return;
        }
        let trimming = trimming.clone();
        let trimmed = on_blocking_pool(self.writer.clone(), |c| trim(c, unix_ms()));
        tokio::spawn(async move {
            match trimmed.await {
                Ok(n) if n > 0 => tracing::debug!(deleted = n, "trimmed the revocations table"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), "trimming the revocations table failed")
                }
            }
            trimming.store(false, Ordering::Release);
        });
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with just this table, in memory.
    fn table() -> Connection {
        let conn = Connection::open_in_memory().expect("opens");
        conn.execute_batch(MIGRATION).expect("schema");
        conn
    }

    fn add(conn: &Connection, hash: u8, at: i64, origin: i64) {
        conn.execute(
            "INSERT INTO revocations (hash, at, origin) VALUES (?1, ?2, ?3)",
            params![&[hash; 32][..], at, origin],
        )
        .expect("insert");
    }

    #[test]
    fn a_read_skips_its_own_origin_and_groups_each_revocation() {
        let mut conn = table();
        add(&conn, 1, 100, 7);
        add(&conn, 2, 100, 7);
        add(&conn, 3, 100, 9); // ours
        add(&conn, 4, 100, 7);
        add(&conn, 5, 200, 7);
        let batch = read_after(&mut conn, 9, 0).expect("reads");
        let want = vec![
            Remote {
                hashes: vec![[1; 32], [2; 32]],
                at: 100,
            },
            // Our own row between them: a separate revocation.
            Remote {
                hashes: vec![[4; 32]],
                at: 100,
            },
            Remote {
                hashes: vec![[5; 32]],
                at: 200,
            },
        ];
        assert_eq!(batch.remote, want);
        assert_eq!((batch.last, batch.missed, batch.full), (5, false, false));
        let again = read_after(&mut conn, 9, batch.last).expect("reads");
        assert_eq!((again.remote, again.last), (vec![], 5));
    }

    #[test]
    fn a_read_that_fills_its_batch_says_so_and_the_next_one_goes_on() {
        let mut conn = table();
        for i in 0..BATCH + 3 {
            add(&conn, (i % 250) as u8, i as i64, 1);
        }
        let first = read_after(&mut conn, 2, 0).expect("reads");
        assert!(first.full);
        assert_eq!(first.last, BATCH as i64);
        let rest = read_after(&mut conn, 2, first.last).expect("reads");
        assert!(!rest.full);
        assert_eq!(rest.remote.len(), 3);
    }

    #[test]
    fn trimming_deletes_old_rows_as_a_prefix_and_a_reader_behind_it_has_missed_some() {
        let mut conn = table();
        let now = 10_000_000u64;
        let old = (now - RETENTION.as_millis() as u64 - 1) as i64;
        add(&conn, 1, old, 1);
        add(&conn, 2, old, 1);
        add(&conn, 3, now as i64, 1);
        // Older than the retention but after a row that is kept: kept, so ids stay a range.
        add(&conn, 4, old, 1);
        assert_eq!(trim(&mut conn, now).expect("trims"), 2);
        assert_eq!(newest(&conn).expect("newest"), 4);

        let behind = read_after(&mut conn, 2, 1).expect("reads");
        assert!(behind.missed, "row 2 was trimmed before it was read");
        assert_eq!(behind.remote.len(), 2, "what is left is still delivered");
        let caught_up = read_after(&mut conn, 2, 2).expect("reads");
        assert!(!caught_up.missed, "nothing after id 2 was trimmed");
    }

    #[test]
    fn ids_are_not_reused_once_everything_is_trimmed() {
        let mut conn = table();
        add(&conn, 1, 0, 1);
        add(&conn, 2, 0, 1);
        assert_eq!(trim(&mut conn, 10_000_000).expect("trims"), 2);
        assert_eq!(trim(&mut conn, 10_000_000).expect("trims"), 0);
        assert_eq!(newest(&conn).expect("newest"), 2, "the trim mark");
        add(&conn, 3, 0, 1);
        let batch = read_after(&mut conn, 2, 2).expect("reads");
        assert_eq!(batch.last, 3);
        assert!(!batch.missed);
    }

    #[test]
    fn a_row_that_is_not_a_hash_counts_as_missed() {
        let mut conn = table();
        conn.execute(
            "INSERT INTO revocations (hash, at, origin) VALUES (x'0102', 0, 1)",
            [],
        )
        .expect("insert");
        let batch = read_after(&mut conn, 2, 0).expect("reads");
        assert!(batch.missed);
        assert_eq!(batch.last, 1);
    }
}
