//! Plain lookups (`get`, the guard's and `/verify`'s path) on one thread of their own that
//! owns the read-only connection.
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
//! A lookup keeps the caller's [`LOCK_WAIT`] budget from the moment it was queued; one that
//! has spent it waiting answers [`StoreError::Busy`]. Dropping [`Lookups`] closes the queue;
//! the thread answers what is queued and ends.
//!
//! ## On the caller's thread first
//!
//! Even batched, handing a lookup to this thread and its answer back cost more CPU than the
//! lookup: on the cold path (every request a token never seen, one worker) a lookup is
//! ~3.6 µs of SQLite, and the hand-off ~8 µs more (unparking the threads, and where they
//! share a CPU two context switches; benches/README.md "Cold path"). So a lookup is first
//! tried where it is asked, on the async worker, on one of a few connections of its own
//! ([`INLINE`]), and only goes to the thread when that cannot be cheap. That blocks the
//! worker, which is acceptable only because it is bounded:
//! - it never waits for a lock: the inline connections have no busy timeout (a lock held
//!   elsewhere, rare in WAL mode where readers do not wait for writers, is `SQLITE_BUSY` at
//!   once) and are taken with `try_lock` (never waiting for another worker); any error
//!   sends the lookup to the thread, which has the whole [`LOCK_WAIT`];
//! - the work is one primary-key probe: a B-tree descent of a few pages, from the
//!   connection's page cache or the OS's, a few µs;
//! - [`INLINE_SLOW_RUN`] lookups in a row that took longer than [`INLINE_SLOW`] anyway
//!   (pages read from a disk, a machine under memory pressure) turn inline lookups off for
//!   [`INLINE_BACKOFF`]: for that long every lookup goes to the thread, as before. In a row,
//!   because one slow lookup is more often the worker preempted in the middle of it (a busy
//!   machine) than a disk, and a thread would not read faster then.
//!
//! An inline lookup reads in autocommit mode, so it sees every commit made before it started.

use super::job_thread::JobThread;
use super::{read, LOCK_WAIT};
use crate::store::{Record, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most connections for lookups on the caller's thread (fewer on a machine with fewer CPUs):
/// one per worker thread that may be looking up at once.
pub(super) const INLINE: usize = 4;

/// An inline lookup slower than this counts towards [`INLINE_SLOW_RUN`].
const INLINE_SLOW: Duration = Duration::from_micros(200);

/// Slow inline lookups in a row that turn them off for [`INLINE_BACKOFF`].
const INLINE_SLOW_RUN: u32 = 4;

/// How long inline lookups stay off after a slow one.
const INLINE_BACKOFF: Duration = Duration::from_secs(1);

/// The instant inline lookups' back-off is counted from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Where one lookup's answer goes.
type Done = oneshot::Sender<StoreResult<Option<Record>>>;

/// A batch's answers on their way to the runtime.
type Answers = Vec<(Done, StoreResult<Option<Record>>)>;

/// One queued lookup and where its answer goes.
struct Job {
    hash: TokenHash,
    /// End of this lookup's [`LOCK_WAIT`], counted from when it was queued.
    deadline: Instant,
    done: Done,
}

/// The inline connections and the queue in front of the lookup thread; see the module
/// comment.
pub(super) struct Lookups {
    thread: JobThread<Job>,
    /// `query_only` connections without a busy timeout, for lookups on the caller's thread.
    inline: Box<[Mutex<Connection>]>,
    /// Inline lookups are off until this many µs after [`EPOCH`].
    inline_off_until: AtomicU64,
    /// Slow inline lookups since the last fast one.
    slow_in_a_row: AtomicU32,
}

impl Lookups {
    /// Starts the lookup thread, which owns `conn` (a `query_only` connection); `inline`
    /// (`query_only` connections too) serve lookups on the caller's thread.
    pub(super) fn start(conn: Connection, inline: Vec<Connection>) -> StoreResult<Self> {
        for c in &inline {
            c.busy_timeout(Duration::ZERO)?;
        }
        let answers = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (answers, mut batches) = tokio::sync::mpsc::unbounded_channel::<Answers>();
            runtime.spawn(async move {
                while let Some(batch) = batches.recv().await {
                    deliver(batch);
                }
            });
            answers
        });
        let thread = JobThread::start("tollgate-sqlite-reader", move |queue| {
            run(&conn, &queue, answers.as_ref());
        })?;
        Ok(Self {
            thread,
            inline: inline.into_iter().map(Mutex::new).collect(),
            inline_off_until: AtomicU64::new(0),
            slow_in_a_row: AtomicU32::new(0),
        })
    }

    /// The record stored under `hash`, if any: read here when that is cheap, else by the
    /// lookup thread (see the module comment).
    pub(super) fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        if let Some(answer) = self.inline(&hash) {
            return Box::pin(std::future::ready(Ok(answer)));
        }
        Box::pin(self.thread.ask(move |done| Job {
            hash,
            deadline: Instant::now() + LOCK_WAIT,
            done,
        }))
    }

    /// The lookup on the caller's thread, or `None` when it should go to the lookup thread:
    /// inline lookups are off, every inline connection is in use, or the read failed.
    fn inline(&self, hash: &TokenHash) -> Option<Option<Record>> {
        let now = micros_since_epoch();
        if now < self.inline_off_until.load(Ordering::Relaxed) {
            return None;
        }
        let conn = self.inline.iter().find_map(|c| c.try_lock().ok())?;
        let started = Instant::now();
        let answer = read(&conn, hash);
        drop(conn);
        if started.elapsed() <= INLINE_SLOW {
            self.slow_in_a_row.store(0, Ordering::Relaxed);
        } else if self.slow_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= INLINE_SLOW_RUN {
            self.slow_in_a_row.store(0, Ordering::Relaxed);
            let until = micros_since_epoch().saturating_add(INLINE_BACKOFF.as_micros() as u64);
            self.inline_off_until.store(until, Ordering::Relaxed);
        }
        answer.ok()
    }
}

#[cfg(test)]
impl Lookups {
    /// Turns inline lookups off (as a slow one does) or back on.
    pub(super) fn inline_off(&self, off: bool) {
        let until = if off { u64::MAX } else { 0 };
        self.inline_off_until.store(until, Ordering::Relaxed);
    }

    /// Holds every inline connection, as busy workers would.
    pub(super) fn hold_inline(&self) -> Vec<std::sync::MutexGuard<'_, Connection>> {
        self.inline
            .iter()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()))
            .collect()
    }
}

fn micros_since_epoch() -> u64 {
    u64::try_from(EPOCH.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Most lookups answered in one read transaction.
const BATCH: usize = 64;

/// The lookup thread: batches of lookups until the queue is closed and empty. Answers go
/// through `answers` to the runtime when there is one.
fn run(
    conn: &Connection,
    queue: &mpsc::Receiver<Job>,
    answers: Option<&tokio::sync::mpsc::UnboundedSender<Answers>>,
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
        let answered = look_up(conn, &mut batch);
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

/// Looks up every job of `batch` (emptying it) in one read transaction.
fn look_up(conn: &Connection, batch: &mut Vec<Job>) -> Answers {
    // Without the transaction (a single job, or BEGIN failed) each lookup is its own.
    let in_txn = batch.len() > 1 && execute(conn, "BEGIN").is_ok();
    let answered = batch
        .drain(..)
        .map(|job| {
            let answer = lookup(conn, &job);
            (job.done, answer)
        })
        .collect();
    if in_txn && execute(conn, "COMMIT").is_err() && !conn.is_autocommit() {
        // A read-only transaction has nothing to lose; never leave it holding the snapshot.
        let _ = execute(conn, "ROLLBACK");
    }
    answered
}

/// Completes each caller's channel (a caller that gave up has dropped its end).
fn deliver(answers: Answers) {
    for (done, answer) in answers {
        let _ = done.send(answer);
    }
}

/// One lookup within what is left of its [`LOCK_WAIT`].
fn lookup(conn: &Connection, job: &Job) -> StoreResult<Option<Record>> {
    let left = job.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StoreError::Busy { waited: LOCK_WAIT });
    }
    conn.busy_timeout(left)?;
    read(conn, &job.hash)
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
