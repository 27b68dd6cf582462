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

use super::job_thread::JobThread;
use super::{read_with, select_sql, LOCK_WAIT};
use crate::store::{Record, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use std::sync::mpsc;
use std::time::Instant;
use tokio::sync::oneshot;

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

/// The queue in front of the lookup thread; see the module comment.
pub(super) struct Lookups(JobThread<Job>);

impl Lookups {
    /// Starts the lookup thread, which owns `conn` (a `query_only` connection).
    pub(super) fn start(conn: Connection) -> StoreResult<Self> {
        let answers = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (answers, mut batches) = tokio::sync::mpsc::unbounded_channel::<Answers>();
            runtime.spawn(async move {
                while let Some(batch) = batches.recv().await {
                    deliver(batch);
                }
            });
            answers
        });
        JobThread::start("tollgate-sqlite-reader", move |queue| {
            run(&conn, &queue, answers.as_ref());
        })
        .map(Self)
    }

    /// The record stored under `hash`, if any.
    pub(super) fn get(&self, hash: TokenHash) -> BoxFuture<'_, StoreResult<Option<Record>>> {
        Box::pin(self.0.ask(move |done| Job {
            hash,
            deadline: Instant::now() + LOCK_WAIT,
            done,
        }))
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
    let answered = {
        // Prepared once for the batch; reset after each lookup, so the transaction can end.
        let mut select = conn.prepare_cached(select_sql());
        batch
            .drain(..)
            .map(|job| {
                let answer = match &mut select {
                    Ok(select) => lookup(conn, select, &job),
                    Err(_) => conn
                        .prepare_cached(select_sql())
                        .map_err(StoreError::from)
                        .and_then(|mut select| lookup(conn, &mut select, &job)),
                };
                (job.done, answer)
            })
            .collect()
    };
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
fn lookup(
    conn: &Connection,
    select: &mut rusqlite::Statement<'_>,
    job: &Job,
) -> StoreResult<Option<Record>> {
    let left = job.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StoreError::Busy { waited: LOCK_WAIT });
    }
    conn.busy_timeout(left)?;
    read_with(select, &job.hash)
}

fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
