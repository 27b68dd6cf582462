//! Plain lookups (`get`, the guard's and `/verify`'s path) on one thread of their own that
//! owns the read-only connection.
//!
//! Before, each lookup was a task on tokio's blocking pool that then took the connection's
//! mutex: with many lookups in flight the pool woke a thread per lookup and they queued on
//! the mutex, so most of the time went to waking and parking threads (system time), not to
//! SQLite. One thread draining a queue does the same lookups in the same order (they were
//! serialised on the mutex anyway) and is woken once for everything queued meanwhile.
//!
//! A lookup keeps the caller's [`LOCK_WAIT`] budget from the moment it was queued; one that
//! has spent it waiting answers [`StoreError::Busy`]. Dropping [`Lookups`] closes the queue;
//! the thread answers what is queued and ends.

use super::{read, LOCK_WAIT};
use crate::store::{Record, StoreError, StoreResult, TokenHash};
use futures_util::future::BoxFuture;
use rusqlite::Connection;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// One queued lookup and where its answer goes.
struct Job {
    hash: TokenHash,
    /// End of this lookup's [`LOCK_WAIT`], counted from when it was queued.
    deadline: Instant,
    done: oneshot::Sender<StoreResult<Option<Record>>>,
}

/// The queue in front of the lookup thread; see the module comment.
pub(super) struct Lookups {
    /// `None` once dropping: closing it lets the thread finish.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Lookups {
    /// Starts the lookup thread, which owns `conn` (a `query_only` connection).
    pub(super) fn start(conn: Connection) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tollgate-sqlite-reader".into())
            .spawn(move || run(&conn, &queue))
            .map_err(StoreError::ThreadStart)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
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
            let queue = self.jobs.as_ref().ok_or(StoreError::ThreadStopped)?;
            queue.send(job).map_err(|_| StoreError::ThreadStopped)?;
            answer.await.map_err(|_| StoreError::ThreadStopped)?
        })
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The lookup thread: one lookup at a time until the queue is closed and empty.
fn run(conn: &Connection, queue: &mpsc::Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        let left = job.deadline.saturating_duration_since(Instant::now());
        let answer = if left.is_zero() {
            Err(StoreError::Busy { waited: LOCK_WAIT })
        } else {
            conn.busy_timeout(left)
                .map_err(StoreError::from)
                .and_then(|()| read(conn, &job.hash))
        };
        let _ = job.done.send(answer);
    }
}
