//! Group commit for inserts: one writer thread commits every insert waiting for it in one
//! transaction.
//!
//! Issuing a token is one insert, and with a transaction per insert the token endpoint's
//! rate is the rate of commits (each a WAL append plus lock traffic, and a blocking-pool
//! hand-off per call). Callers instead queue their insert on a channel and await their own
//! result; the writer thread takes everything queued (up to [`MAX_BATCH`]), runs it in one
//! `BEGIN IMMEDIATE` transaction with a cached prepared statement, commits once and answers
//! every caller. Under load a commit carries many inserts; alone, an insert commits at once
//! (no timer waits for company).
//!
//! The writer uses the store's one writing connection (the same mutex as every other
//! write), so this process still has one writer and `consume` stays atomic.
//!
//! Errors: if the batch fails (a statement or the commit), it is rolled back and each of
//! its inserts is tried again alone, so a bad insert fails only its own caller and a
//! passing lock conflict costs a retry, not an error. Every insert keeps the caller's
//! [`LOCK_WAIT`] budget from the moment it was queued; one that has spent it answers
//! [`StoreError::Busy`] without being tried.
//!
//! Shutdown: dropping the [`Writer`] closes the queue and waits for the thread, which
//! commits everything still queued first. An insert whose caller stopped waiting (its future
//! dropped after it was queued) is still committed.

use super::job_thread::JobThread;
use super::{insert_row, LOCK_WAIT};
use crate::store::{Record, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// Most inserts committed in one transaction: bounds how long the writing connection is
/// held (other writes such as `consume` wait for it) at well under a millisecond's work.
const MAX_BATCH: usize = 256;

/// One queued insert and where its answer goes.
struct Job {
    hash: TokenHash,
    record: Record,
    /// End of this insert's [`LOCK_WAIT`], counted from when it was queued.
    deadline: Instant,
    done: oneshot::Sender<StoreResult<()>>,
}

/// The queue in front of the writer thread; see the module comment.
pub(super) struct Writer(JobThread<Job>);

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> StoreResult<Self> {
        JobThread::start("tollgate-sqlite-writer", move |queue| run(&conn, &queue)).map(Self)
    }

    /// Queues an insert (when first polled) and resolves once it is committed or failed.
    pub(super) fn insert(&self, hash: TokenHash, record: Record) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.0.ask(move |done| Job {
            hash,
            record,
            deadline: Instant::now() + LOCK_WAIT,
            done,
        }))
    }
}

/// The writer thread: a batch per wake-up until the queue is closed and empty.
fn run(conn: &Mutex<Connection>, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A panic inside a transaction rolls it back, so the connection stays usable.
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        commit(&mut conn, batch);
    }
}

/// Commits `batch` in one transaction, or each of its inserts alone if that fails, and
/// answers every caller.
fn commit(conn: &mut Connection, batch: Vec<Job>) {
    let now = Instant::now();
    let (live, late): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| j.deadline > now);
    for job in late {
        let _ = job.done.send(Err(StoreError::Busy { waited: LOCK_WAIT }));
    }
    let Some(deadline) = live.iter().map(|j| j.deadline).min() else {
        return;
    };
    if live.len() > 1 && in_one_transaction(conn, deadline, &live).is_ok() {
        for job in live {
            let _ = job.done.send(Ok(()));
        }
        return;
    }
    for job in live {
        let result = in_one_transaction(conn, job.deadline, std::slice::from_ref(&job));
        let _ = job.done.send(result);
    }
}

/// Inserts `jobs` in one `BEGIN IMMEDIATE` transaction, waiting for another process's lock
/// until `deadline` at most. Dropping the transaction on an error rolls it back.
fn in_one_transaction(conn: &mut Connection, deadline: Instant, jobs: &[Job]) -> StoreResult<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StoreError::Busy { waited: LOCK_WAIT });
    }
    conn.busy_timeout(left)?;
    let tx = super::write_tx(conn)?;
    for job in jobs {
        insert_row(&tx, &job.hash, &job.record)?;
    }
    tx.commit()?;
    Ok(())
}
