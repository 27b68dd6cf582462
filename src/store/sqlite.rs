//! The embedded default store: one SQLite file in WAL mode.
//!
//! Schema migrations are embedded and applied at open (tracked in `PRAGMA user_version`).
//! Every call but a plain lookup runs on tokio's blocking pool so that SQLite's file IO and
//! lock waits never stall the async workers, except inserts, which one writer thread commits
//! in batches (group commit, see [`batch`]); one connection behind a mutex keeps `consume`
//! atomic within this process, and its transaction takes the write lock at `BEGIN` (see
//! [`write_tx`]) so it stays atomic across processes.
//! Plain lookups (`get`, the guard's path) use read-only connections of their own, one
//! answering on the runtime's worker and one on a thread for what the worker must not wait
//! for (see [`lookups`]): in WAL mode they read the last commit even while a write waits for
//! a lock, so the guard keeps verifying while the file is locked by another process or
//! cannot be written. Another connection, on a thread of its own, copies the WAL back into
//! the file so that commits do not wait for it (see [`checkpoint`]).
//!
//! A call gives up after [`LOCK_WAIT`] in all (queueing behind this process's other calls
//! plus waiting out another process's lock), so an outage is a prompt error (503 upstream
//! of here), not a queue of requests that grows behind a lock.
//!
//! Several processes may share the file (two instances on one host, for restarts with no
//! downtime). Revocations made here reach this process's guard through the in-process feed
//! before the call returns; every other process's through the revocations table, which
//! each store instance polls (see [`revocations`]).

use super::{LocalFeed, Record, RecordKind, RecordState, RevocationFeed, RevocationSink};
use super::{StoreError, StoreResult, TokenHash, TokenStore};
use futures_util::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod batch;
mod checkpoint;
mod job_thread;
mod lookups;
mod revocations;
use revocations::Poller;

/// Longest one call waits to get at the database; see the module comment.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Page cache of each connection, in KiB as SQLite takes a negative `cache_size` (the
/// default is 2 MiB): grows to this only as the file's pages are used.
const PAGE_CACHE_KIB: i64 = -16 * 1024;

/// When the WAL is copied back into the file ([`checkpoint`]): by the checkpoint thread from
/// 4000 pages (~16 MiB; SQLite's default is 1000, and issuing writes random keys, so a page
/// touched by many commits is copied once per 4000 pages, not four times), by the writer
/// itself from 16000 (~64 MiB, the WAL's bound under a steady stream of commits: the writer
/// then copies only what the thread has not, and the WAL starts over). Measured with the
/// `load` bench (benches/README.md): the token endpoint's p99 34 ms → 5.5 ms; with the
/// writer's bound at 8000, 14 ms.
const WAL_CHECKPOINTS: checkpoint::Thresholds = checkpoint::Thresholds {
    nudge: 4000,
    writer: 16000,
};

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE records (
    hash           BLOB PRIMARY KEY,
    kind           TEXT NOT NULL,
    state          TEXT NOT NULL,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    sub            TEXT NOT NULL,
    username       TEXT,
    scope          TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    redirect_uri   TEXT,
    code_challenge TEXT,
    name           TEXT,
    email          TEXT,
    csrf           TEXT
) WITHOUT ROWID;
CREATE INDEX records_grant ON records(grant_id);
CREATE INDEX records_expiry ON records(expires_at);
"#,
    r#"
CREATE TABLE login_failures (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX login_failures_key ON login_failures(key, at);
CREATE TABLE login_bans (key TEXT PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // Grants get an absolute end. A grant from before this migration ends when its record
    // would have expired anyway: rotation no longer extends it, and nothing lives longer
    // than it did before the upgrade.
    r#"
ALTER TABLE records ADD COLUMN grant_expires_at INTEGER NOT NULL DEFAULT 0;
UPDATE records SET grant_expires_at = expires_at;
ALTER TABLE records ADD COLUMN browser TEXT;
CREATE TABLE server_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
"#,
    revocations::MIGRATION,
    // RFC 8707 audiences of codes and tokens, space-separated (resource identifiers hold
    // no spaces); empty for everything issued before.
    r#"
ALTER TABLE records ADD COLUMN audiences TEXT NOT NULL DEFAULT '';
"#,
    // RFC 9449: the DPoP key thumbprint a code's or token's grant is bound to, and the ids of
    // spent DPoP proofs (shared by the processes on this file), each until its proof is stale.
    r#"
ALTER TABLE records ADD COLUMN jkt TEXT;
CREATE TABLE proof_ids (key BLOB PRIMARY KEY, until INTEGER NOT NULL) WITHOUT ROWID;
"#,
];

const COLUMNS: &str =
    "kind, state, grant_id, client_id, sub, username, scope, issued_at, expires_at, \
     redirect_uri, code_challenge, name, email, csrf, grant_expires_at, browser, audiences, jkt";

/// A SQLite-backed [`TokenStore`].
pub struct SqliteStore {
    /// Every write, and the reads that must be atomic with one.
    conn: Arc<Mutex<Connection>>,
    /// The `query_only` connection for plain lookups, on a thread of its own.
    lookups: lookups::Lookups,
    /// This process's subscribers; the revocations poller holds it weakly and stops with it.
    feed: Arc<LocalFeed>,
    /// This instance's name in the revocations table.
    origin: i64,
    /// Group commit for inserts, on `conn`; see [`batch`].
    writer: batch::Writer,
    /// Copies the WAL back into the file off the writer's path; see [`checkpoint`]. Held
    /// for its thread, which stops when it is dropped (tests also read its progress).
    #[cfg_attr(not(test), allow(dead_code))]
    checkpointer: checkpoint::Checkpointer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// starts polling the revocations table (on the current tokio runtime).
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, WAL_CHECKPOINTS)
    }

    /// [`Self::open`] with the WAL's checkpoint thresholds given.
    fn open_with(path: &Path, checkpoints: checkpoint::Thresholds) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(LOCK_WAIT)?;
        enable_wal(&conn)?;
        // WAL with `synchronous = NORMAL`: a commit is a write to the WAL file, with no
        // fsync; the WAL is synced at checkpoints. A crash of the process loses nothing; a
        // power loss or OS crash may lose the last commits (tokens issued just before it,
        // which their clients then find unknown), never the file's consistency.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Issuing writes random keys into three B-trees (the records and two indexes): a
        // bigger page cache keeps their inner pages in memory.
        conn.pragma_update(None, "cache_size", PAGE_CACHE_KIB)?;
        let checkpointer = checkpoint::Checkpointer::start(path)?;
        checkpointer.watch(&mut conn, checkpoints)?;
        migrate(&mut conn)?;
        let reader = open_reader(path)?;
        let poller_reader = open_reader(path)?;
        // Read from the newest row now: nothing revoked after `open` returns is missed.
        let last = revocations::newest(&conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let store = Self {
            writer: batch::Writer::start(conn.clone())?,
            conn,
            lookups: lookups::Lookups::start(reader, open_reader(path)?)?,
            feed: Arc::new(LocalFeed::default()),
            origin: revocations::new_origin(),
            checkpointer,
        };
        store.feed.share();
        let poller = Poller {
            reader: Arc::new(Mutex::new(poller_reader)),
            writer: store.conn.clone(),
            origin: store.origin,
            feed: Arc::downgrade(&store.feed),
            last,
        };
        tokio::spawn(poller.run());
        Ok(store)
    }

    /// Runs `f` with the writing connection on the blocking pool.
    fn with<T, F>(&self, f: F) -> BoxFuture<'_, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        on_blocking_pool(self.conn.clone(), f)
    }
}

/// Puts the file in WAL mode (which sticks to the file). Switching takes an exclusive lock,
/// and SQLite reports a conflict at once instead of waiting for it, so a process opening a
/// new file while another does the same retries, for [`LOCK_WAIT`] at most.
fn enable_wal(conn: &Connection) -> StoreResult<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            done => return Ok(done?),
        }
    }
}

/// A `query_only` connection to `path`.
fn open_reader(path: &Path) -> StoreResult<Connection> {
    let reader = Connection::open(path)?;
    reader.pragma_update(None, "query_only", true)?;
    reader.pragma_update(None, "cache_size", PAGE_CACHE_KIB)?;
    reader.busy_timeout(LOCK_WAIT)?;
    Ok(reader)
}

/// Runs `f` with `conn` on the blocking pool, within [`LOCK_WAIT`] from now.
fn on_blocking_pool<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> BoxFuture<'static, StoreResult<T>>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
{
    let deadline = Instant::now() + LOCK_WAIT;
    Box::pin(async move {
        tokio::task::spawn_blocking(move || {
            // A panic inside a transaction rolls it back, so the connection stays usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Time spent queueing counts against the wait for another process's lock.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Busy { waited: LOCK_WAIT });
            }
            guard.busy_timeout(left)?;
            f(&mut guard)
        })
        .await?
    })
}

/// A transaction that reads and then writes, holding the write lock from its start.
///
/// A deferred one (`BEGIN`) would read a snapshot, and if another process committed a
/// write meanwhile its own write would fail at once with "database is locked" (WAL cannot
/// move a read snapshot forward inside a transaction), however long the busy timeout: two
/// instances racing for one code would answer one of them 503. `BEGIN IMMEDIATE` waits its
/// turn (within the busy timeout) before reading, so the loser reads the winner's commit.
fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Brings the schema up to date. Several processes may open one file at once (a new
/// instance starting beside a running one): the version is read again under the write lock,
/// so exactly one of them applies each migration.
fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version = |c: &Connection| -> StoreResult<usize> {
        Ok(c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize)
    };
    if version(conn)? >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    let from = version(&tx)?;
    for sql in MIGRATIONS.iter().skip(from) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()?;
    Ok(())
}

fn kind_str(k: RecordKind) -> &'static str {
    match k {
        RecordKind::Code => "code",
        RecordKind::Access => "access",
        RecordKind::Refresh => "refresh",
        RecordKind::Session => "session",
    }
}

fn state_str(s: RecordState) -> &'static str {
    match s {
        RecordState::Active => "active",
        RecordState::Used => "used",
        RecordState::Revoked => "revoked",
    }
}

fn parse_kind(s: &str) -> StoreResult<RecordKind> {
    Ok(match s {
        "code" => RecordKind::Code,
        "access" => RecordKind::Access,
        "refresh" => RecordKind::Refresh,
        "session" => RecordKind::Session,
        other => return Err(StoreError::Corrupt(format!("unknown kind {other:?}"))),
    })
}

fn parse_state(s: &str) -> StoreResult<RecordState> {
    Ok(match s {
        "active" => RecordState::Active,
        "used" => RecordState::Used,
        "revoked" => RecordState::Revoked,
        other => return Err(StoreError::Corrupt(format!("unknown state {other:?}"))),
    })
}

fn read(conn: &Connection, hash: &TokenHash) -> StoreResult<Option<Record>> {
    let mut select = conn.prepare_cached(select_sql())?;
    read_with(&mut select, hash)
}

/// [`read`] with the prepared [`select_sql`] statement (the lookup thread holds one for a
/// whole batch instead of finding it in the statement cache per lookup).
fn read_with(
    select: &mut rusqlite::Statement<'_>,
    hash: &TokenHash,
) -> StoreResult<Option<Record>> {
    // Text columns that are parsed (kind, state, the space-separated lists) are borrowed from
    // the row, not copied out first. Kind and state stay unparsed until the row is out, so a
    // corrupt value is our error type.
    let row = select
        .query_row(params![&hash[..]], |r| {
            let kind = parse_kind(r.get_ref(0)?.as_str()?);
            let state = parse_state(r.get_ref(1)?.as_str()?);
            let record = Record {
                kind: RecordKind::Code,
                state: RecordState::Active,
                grant_id: r.get(2)?,
                client_id: r.get(3)?,
                sub: r.get(4)?,
                username: r.get(5)?,
                scopes: words(r.get_ref(6)?.as_str()?),
                issued_at: r.get::<_, i64>(7)? as u64,
                expires_at: r.get::<_, i64>(8)? as u64,
                redirect_uri: r.get(9)?,
                code_challenge: r.get(10)?,
                name: r.get(11)?,
                email: r.get(12)?,
                csrf: r.get(13)?,
                grant_expires_at: r.get::<_, i64>(14)? as u64,
                browser: r.get(15)?,
                audiences: words(r.get_ref(16)?.as_str()?),
                jkt: r.get(17)?,
            };
            Ok((kind, state, record))
        })
        .optional()?;
    let Some((kind, state, record)) = row else {
        return Ok(None);
    };
    Ok(Some(Record {
        kind: kind?,
        state: state?,
        ..record
    }))
}

/// The words of a space-separated column (scopes, audiences).
fn words(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `SELECT` of a record's columns by hash; built once, then found in each connection's
/// statement cache by this text.
fn select_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {COLUMNS} FROM records WHERE hash = ?1"))
}

/// The insert (or replace) of one record; see [`select_sql`].
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| format!("INSERT OR REPLACE INTO records (hash, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"))
}

/// Writes one record (the writer thread's statement, see [`batch`]).
fn insert_row(conn: &Connection, hash: &TokenHash, r: &Record) -> StoreResult<()> {
    conn.prepare_cached(insert_sql())?.execute(params![
        &hash[..],
        kind_str(r.kind),
        state_str(r.state),
        r.grant_id,
        r.client_id,
        r.sub,
        r.username,
        r.scopes.join(" "),
        r.issued_at as i64,
        r.expires_at as i64,
        r.redirect_uri,
        r.code_challenge,
        r.name,
        r.email,
        r.csrf,
        r.grant_expires_at as i64,
        r.browser,
        r.audiences.join(" "),
        r.jkt,
    ])?;
    Ok(())
}

fn set_state(conn: &Connection, hash: &TokenHash, state: RecordState) -> StoreResult<()> {
    conn.execute(
        "UPDATE records SET state = ?2 WHERE hash = ?1",
        params![&hash[..], state_str(state)],
    )?;
    Ok(())
}

impl TokenStore for SqliteStore {
    fn insert(&self, hash: TokenHash, r: Record) -> BoxFuture<'_, StoreResult<()>> {
        self.writer.insert(hash, r)
    }

    fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        self.lookups.get(hash)
    }

    fn consume(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        self.with(move |conn| {
            let tx = write_tx(conn)?;
            let before = read(&tx, &hash)?;
            if before
                .as_ref()
                .is_some_and(|r| r.state == RecordState::Active)
            {
                set_state(&tx, &hash, RecordState::Used)?;
            }
            tx.commit()?;
            Ok(before)
        })
    }

    fn revoke(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        let origin = self.origin;
        let revoked = self.with(move |conn| {
            let tx = write_tx(conn)?;
            let before = read(&tx, &hash)?;
            if before.is_some() {
                set_state(&tx, &hash, RecordState::Revoked)?;
                revocations::append(&tx, origin, &[hash])?;
            }
            tx.commit()?;
            Ok(before)
        });
        Box::pin(async move {
            let before = revoked.await?;
            if before.is_some() {
                self.feed.publish_tokens(&[hash]).await;
            }
            Ok(before)
        })
    }

    fn revoke_grant<'a>(&'a self, grant_id: &'a str) -> BoxFuture<'a, StoreResult<Vec<TokenHash>>> {
        let grant_id = grant_id.to_string();
        let origin = self.origin;
        let revoked = self.with(move |conn| {
            let tx = write_tx(conn)?;
            let hashes = {
                let mut stmt = tx.prepare("SELECT hash FROM records WHERE grant_id = ?1")?;
                let rows = stmt.query_map(params![grant_id], |r| r.get::<_, Vec<u8>>(0))?;
                rows.filter_map(|h| h.ok().and_then(|h| TokenHash::try_from(h.as_slice()).ok()))
                    .collect::<Vec<_>>()
            };
            tx.execute(
                "UPDATE records SET state = 'revoked' WHERE grant_id = ?1",
                params![grant_id],
            )?;
            revocations::append(&tx, origin, &hashes)?;
            tx.commit()?;
            Ok(hashes)
        });
        Box::pin(async move {
            let hashes = revoked.await?;
            self.feed.publish_tokens(&hashes).await;
            Ok(hashes)
        })
    }

    fn delete(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<()>> {
        self.with(move |conn| {
            conn.execute("DELETE FROM records WHERE hash = ?1", params![&hash[..]])?;
            Ok(())
        })
    }

    fn sweep(&self, now: u64) -> BoxFuture<'_, StoreResult<u64>> {
        self.with(move |conn| {
            let n = conn.execute(
                "DELETE FROM records WHERE expires_at <= ?1",
                params![now as i64],
            )?;
            let keep_after = now.saturating_sub(super::FAILURE_RETENTION_SECS) as i64;
            conn.execute(
                "DELETE FROM login_failures WHERE at < ?1",
                params![keep_after],
            )?;
            conn.execute(
                "DELETE FROM login_bans WHERE until <= ?1",
                params![now as i64],
            )?;
            conn.execute(
                "DELETE FROM proof_ids WHERE until <= ?1",
                params![now as i64],
            )?;
            Ok(n as u64)
        })
    }

    fn add_failure<'a>(
        &'a self,
        key: &'a str,
        at: u64,
        since: u64,
    ) -> BoxFuture<'a, StoreResult<u32>> {
        let key = key.to_string();
        self.with(move |conn| {
            let tx = write_tx(conn)?;
            tx.execute(
                "INSERT INTO login_failures (key, at) VALUES (?1, ?2)",
                params![key, at as i64],
            )?;
            let count: i64 = tx.query_row(
                "SELECT COUNT(*) FROM login_failures WHERE key = ?1 AND at >= ?2",
                params![key, since as i64],
                |r| r.get(0),
            )?;
            tx.commit()?;
            Ok(count as u32)
        })
    }

    fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<()>> {
        let key = key.to_string();
        self.with(move |conn| {
            conn.execute("DELETE FROM login_failures WHERE key = ?1", params![key])?;
            Ok(())
        })
    }

    fn ban<'a>(&'a self, key: &'a str, until: u64) -> BoxFuture<'a, StoreResult<()>> {
        let key = key.to_string();
        self.with(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO login_bans (key, until) VALUES (?1, ?2)",
                params![key, until as i64],
            )?;
            Ok(())
        })
    }

    fn banned_until<'a>(&'a self, key: &'a str) -> BoxFuture<'a, StoreResult<Option<u64>>> {
        let key = key.to_string();
        self.with(move |conn| {
            let until: Option<i64> = conn
                .query_row(
                    "SELECT until FROM login_bans WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(until.map(|u| u as u64))
        })
    }

    fn server_key<'a>(
        &'a self,
        name: &'a str,
        candidate: [u8; 32],
    ) -> BoxFuture<'a, StoreResult<[u8; 32]>> {
        let name = name.to_string();
        self.with(move |conn| {
            let tx = write_tx(conn)?;
            tx.execute(
                "INSERT OR IGNORE INTO server_keys (name, key) VALUES (?1, ?2)",
                params![name, &candidate[..]],
            )?;
            let stored: Vec<u8> = tx.query_row(
                "SELECT key FROM server_keys WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            tx.commit()?;
            <[u8; 32]>::try_from(stored.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("server key {name:?} is not 32 bytes")))
        })
    }

    fn spend_proof_id(&self, key: [u8; 32], ttl_secs: u64) -> BoxFuture<'_, StoreResult<bool>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.with(move |conn| {
            // One statement, so atomic across processes: a new id is inserted, an id whose
            // time is over (its proof went stale) may be spent again, a live one changes
            // nothing.
            let changed = conn.execute(
                "INSERT INTO proof_ids (key, until) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET until = excluded.until \
                 WHERE proof_ids.until <= ?3",
                params![&key[..], now.saturating_add(ttl_secs) as i64, now as i64],
            )?;
            Ok(changed == 1)
        })
    }

    fn shares_proof_ids(&self) -> bool {
        // Several processes on one host may share the file (see the module comment).
        true
    }
}

impl RevocationFeed for SqliteStore {
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

#[cfg(test)]
mod tests;
