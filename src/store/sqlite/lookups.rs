//! Plain lookups (`get`, the guard's and `/verify`'s path): answered on the runtime's worker
//! at the end of its tick ([`on_worker`]), and on one thread of their own, which owns a
//! read-only connection, for what the worker must not wait for (a locked file, a file read
//! from disk) and where no runtime runs. Both answer in batches as described below for the
//! thread (one read transaction each, the memory map), each on a connection of its own; the
//! thread's connection maps the file only once it answers batches while it is unchanged.
//!
//! Before, each lookup was a task on tokio's blocking pool that then took the connection's
//! mutex: with many lookups in flight the pool woke a thread per lookup and they queued on
//! the mutex, so most of the time went to waking and parking threads (system time), not to
//! SQLite. One thread draining a queue does the same lookups in the same order (they were
//! serialised on the mutex anyway) and is woken once for everything queued meanwhile.
//!
//! The thread answers what is queued in batches of up to [`BATCH`], in one read transaction
//! each: a lookup in autocommit mode takes and drops the file's shared lock and the WAL read
//! mark itself (`fcntl` calls and lock bookkeeping that cost about as much as the B-tree
//! search; the cold-path profile, benches/README.md "Cold path"). Only jobs queued before
//! the batch's transaction starts are in it, so each lookup still sees every commit made
//! before it was queued (a token issued, or revoked, before the request that asks for it).
//! The answers go back to the runtime as one message per batch, to a task there that
//! completes each caller's channel: a wake from this thread costs the runtime's worker an
//! unpark (a syscall, and when the two share a CPU a switch to the worker and back) per
//! answer, a wake from a task on the runtime costs a queue push. Without a runtime at start
//! (or once it is gone) the thread answers each caller itself. Like the revocations poller,
//! that task lives on the runtime the store was opened on, which must keep running while
//! the store is used (tollgate has one runtime for everything).
//!
//! Woken by the first job of a burst, the thread yields once before draining the queue: when
//! it shares a CPU with the runtime's worker (one worker, a small machine), the worker then
//! queues the rest of the burst instead of being preempted for every job. On a CPU of its own
//! the yield returns at once.
//!
//! While the file does not change, the connection reads it through a memory map of up to
//! [`MMAP_BYTES`] (SQLite's `mmap_size`). A lookup reads one leaf page of the records B-tree,
//! and once the file is larger than the page cache (16 MiB; 400,000 tokens take ~135 MB) most
//! of them were a `pread` into the page cache plus the cache's own bookkeeping: about a third
//! of this thread's CPU per lookup (benches/README.md "Cold path", session 7). Through the
//! map, a page the OS already caches costs a memory access. But SQLite drops the map (as it
//! drops its page cache) at every read transaction that finds a commit made since the last
//! one, and then faults the pages in again: with tokens being issued meanwhile that cost more
//! than the `pread`s it saves (session 7's mixed run). So each batch reads `PRAGMA
//! data_version` (changed by other connections' commits) in its transaction, and [`Map`]
//! stops mapping at the first change and maps again once the file has been unchanged for
//! [`MAP_AFTER_QUIET`]. What the map changes, and what it does not:
//! - a lookup reads the same snapshot either way: a page that is newer in the WAL is read from
//!   the WAL (through the page cache), only the file's own pages come from the map;
//! - the map is read-only and this connection only reads; every write goes through the
//!   writer's connection with `write()`. A file past [`MMAP_BYTES`] reads the rest with
//!   `pread`;
//! - memory: the mapped pages count in the process's RSS as file-backed (`RssFile`: shared
//!   with the OS page cache, reclaimable under pressure), and this connection's page cache
//!   (anonymous memory) no longer fills with the file's pages, so `RssAnon` is lower;
//! - an I/O error while reading a mapped page is a `SIGBUS` instead of an error answer
//!   (SQLite's documented trade-off, sqlite.org/mmap.html): the store is a local file, whose
//!   read errors mean a failing disk either way.
//!
//! A lookup keeps the caller's [`LOCK_WAIT`] budget from the moment it was queued; one that
//! has spent it waiting answers [`StoreError::Busy`]. Dropping [`Lookups`] closes the queue;
//! the thread answers what is queued and ends.

mod on_worker;

use super::job_thread::JobThread;
use super::{read_with, select_sql, LOCK_WAIT};
use crate::store::{Record, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where one lookup's answer goes.
type Done = oneshot::Sender<StoreResult<Option<Record>>>;

/// A batch's lookups with their answers, on their way to the callers.
type Answers = Vec<(Job, StoreResult<Option<Record>>)>;

/// One queued lookup and where its answer goes.
struct Job {
    hash: TokenHash,
    /// End of this lookup's [`LOCK_WAIT`], counted from when it was queued.
    deadline: Instant,
    done: Done,
}

/// The lookups' two ways: the worker's and the thread's; see the module comment.
pub(super) struct Lookups {
    /// Answers lookups on the runtime's worker (none without a runtime at start). Declared
    /// before `thread` so that it lets go of the thread's queue before the thread is joined.
    on_worker: Option<on_worker::OnWorker>,
    thread: JobThread<Job>,
    /// Whether the lookups map the file now; read by the tests ([`Lookups::mapped`]).
    #[cfg_attr(not(test), allow(dead_code))]
    mapped: Arc<AtomicBool>,
}

impl Lookups {
    /// Starts the lookup thread, which owns `conn`, and the worker's part with `on_worker`
    /// when a runtime runs (both `query_only` connections).
    pub(super) fn start(conn: Connection, on_worker: Connection) -> StoreResult<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let answers = runtime.as_ref().map(|runtime| {
            let (answers, mut batches) = tokio::sync::mpsc::unbounded_channel::<Answers>();
            runtime.spawn(async move {
                while let Some(batch) = batches.recv().await {
                    deliver(batch);
                }
            });
            answers
        });
        let mapped = Arc::new(AtomicBool::new(false));
        let map = Map::new(mapped.clone());
        let thread = JobThread::start("tollgate-sqlite-reader", move |queue| {
            run(&conn, &queue, answers.as_ref(), map);
        })?;
        let on_worker = match (runtime, thread.queue()) {
            (Some(runtime), Some(queue)) => Some(on_worker::OnWorker::start(
                &runtime,
                on_worker,
                queue,
                Map::new(mapped.clone()),
            )?),
            _ => None,
        };
        Ok(Self {
            on_worker,
            thread,
            mapped,
        })
    }

    /// True while the lookups read the file through the map (see the module comment).
    #[cfg(test)]
    pub(super) fn mapped(&self) -> bool {
        self.mapped.load(Ordering::Relaxed)
    }

    /// How many lookups the worker answered, and how many it handed to the thread.
    #[cfg(test)]
    pub(super) fn on_worker_counts(&self) -> (u64, u64) {
        self.on_worker.as_ref().map_or((0, 0), |w| w.counts())
    }

    /// The record stored under `hash`, if any.
    pub(super) fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(async move {
            let (done, answer) = oneshot::channel();
            let job = Job {
                hash,
                deadline: Instant::now() + LOCK_WAIT,
                done,
            };
            let for_thread = match &self.on_worker {
                Some(worker) => worker.offer(job).err(),
                None => Some(job),
            };
            if let Some(job) = for_thread {
                self.thread.send(job)?;
            }
            answer.await.map_err(|_| StoreError::ThreadStopped)?
        })
    }
}

/// Most of the file the lookup connection reads through a memory map, in bytes (see the
/// module comment). Address space, not memory: only pages read count, as file-backed pages.
const MMAP_BYTES: i64 = 1 << 30;

/// How long the file must stay unchanged before the lookups map it (see the module comment).
pub(super) const MAP_AFTER_QUIET: Duration = Duration::from_secs(1);

/// Whether the lookup connection maps the file, from what the batches saw; see the module
/// comment.
struct Map {
    on: bool,
    /// `on`, where [`Lookups::mapped`] reads it.
    shown: Arc<AtomicBool>,
    /// `PRAGMA data_version` in the last batch that read it.
    version: Option<i64>,
    /// When a batch last saw the file changed (or the thread started).
    changed_at: Instant,
}

impl Map {
    fn new(shown: Arc<AtomicBool>) -> Self {
        Self {
            on: false,
            shown,
            version: None,
            changed_at: Instant::now(),
        }
    }

    /// After a batch that read `version` (outside its transaction): stops mapping when the
    /// file changed, maps once it has been unchanged for [`MAP_AFTER_QUIET`].
    fn after_batch(&mut self, conn: &Connection, version: Option<i64>) {
        let Some(version) = version else { return };
        if self.version != Some(version) {
            self.version = Some(version);
            self.changed_at = Instant::now();
            if self.on {
                self.set(conn, false);
            }
        } else if !self.on && self.changed_at.elapsed() >= MAP_AFTER_QUIET {
            self.set(conn, true);
        }
    }

    fn set(&mut self, conn: &Connection, on: bool) {
        let bytes = if on { MMAP_BYTES } else { 0 };
        // A failure leaves the map as it was; the next batch tries again.
        if conn.pragma_update(None, "mmap_size", bytes).is_ok() {
            self.on = on;
            self.shown.store(on, Ordering::Relaxed);
        }
    }
}

/// Most lookups answered in one read transaction.
const BATCH: usize = 64;

/// The lookup thread: batches of lookups until the queue is closed and empty. Answers go
/// through `answers` to the runtime when there is one.
fn run(
    conn: &Connection,
    queue: &mpsc::Receiver<Job>,
    answers: Option<&tokio::sync::mpsc::UnboundedSender<Answers>>,
    mut map: Map,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = queue.recv() {
        std::thread::yield_now();
        batch.push(first);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let answered = look_up(conn, &mut batch, &mut map, Waits::ForLocks);
        match answers {
            Some(runtime) => {
                if let Err(unsent) = runtime.send(answered) {
                    deliver(unsent.0);
                }
            }
            None => deliver(answered),
        }
    }
}

/// Whether a lookup waits for another connection's lock on the file (within its
/// [`LOCK_WAIT`]), or answers [`SQLITE_BUSY`](is_busy) at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waits {
    ForLocks,
    Never,
}

/// Looks up every job of `batch` (emptying it) in one read transaction, then lets `map`
/// decide whether the next batches read through the map.
fn look_up(conn: &Connection, batch: &mut Vec<Job>, map: &mut Map, waits: Waits) -> Answers {
    // Without the transaction (a single job, or BEGIN failed) each lookup is its own.
    let in_txn = batch.len() > 1 && execute(conn, "BEGIN").is_ok();
    // In the transaction, this starts its snapshot: the version the lookups read at.
    let version = conn
        .prepare_cached("PRAGMA data_version")
        .and_then(|mut version| version.query_row([], |r| r.get::<_, i64>(0)))
        .ok();
    let answered = {
        // Prepared once for the batch; reset after each lookup, so the transaction can end.
        let mut select = conn.prepare_cached(select_sql());
        batch
            .drain(..)
            .map(|job| {
                let answer = match &mut select {
                    Ok(select) => lookup(conn, select, &job, waits),
                    Err(_) => conn
                        .prepare_cached(select_sql())
                        .map_err(StoreError::from)
                        .and_then(|mut select| lookup(conn, &mut select, &job, waits)),
                };
                (job, answer)
            })
            .collect()
    };
    if in_txn && execute(conn, "COMMIT").is_err() && !conn.is_autocommit() {
        // A read-only transaction has nothing to lose; never leave it holding the snapshot.
        let _ = execute(conn, "ROLLBACK");
    }
    map.after_batch(conn, version);
    answered
}

/// Completes each caller's channel (a caller that gave up has dropped its end).
fn deliver(answers: Answers) {
    for (job, answer) in answers {
        let _ = job.done.send(answer);
    }
}

/// True for SQLite's answer that another connection holds a lock the lookup needs.
fn is_busy(error: &StoreError) -> bool {
    matches!(error, StoreError::Sqlite(e) if matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    ))
}

/// One lookup, waiting for locks (as `waits` says) within what is left of its [`LOCK_WAIT`].
fn lookup(
    conn: &Connection,
    select: &mut rusqlite::Statement<'_>,
    job: &Job,
    waits: Waits,
) -> StoreResult<Option<Record>> {
    if waits == Waits::ForLocks {
        let left = job.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Busy { waited: LOCK_WAIT });
        }
        conn.busy_timeout(left)?;
    }
    read_with(select, &job.hash)
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
