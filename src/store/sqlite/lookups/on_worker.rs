//! Lookups answered on the runtime's own worker, at the end of its tick, instead of on the
//! lookup thread.
//!
//! Why: on a small machine (one worker sharing a CPU with the lookup thread) handing a lookup
//! to the thread and its answer back costs more than the lookup itself: the thread is woken
//! and scheduled, it answers through the runtime's driver (an `eventfd` write), and the worker
//! parks in `epoll_wait` meanwhile, once for every handful of requests. Answered on the
//! worker, a request with a token not seen before cost 1.3 µs (8%) less CPU, the SQLite
//! lookup included (benches/README.md "Cold path", session 11).
//!
//! How: [`OnWorker::offer`] queues the lookup and wakes one task, which yields once before it
//! answers: tokio runs a yielded task only after it has polled the driver and every task
//! already woken, so by then the lookups of every request that became ready in this tick are
//! queued too. It answers them in one read transaction, as the thread does (the parent
//! module), on a connection of its own, and completes each caller's channel from the worker
//! (a queue push, no syscall).
//!
//! The worker must not wait for anyone, so:
//! - its connection never waits for a lock (`busy_timeout` 0): a lookup that finds the file
//!   locked (`SQLITE_BUSY`: another process recovering the WAL, or holding the file in
//!   exclusive locking mode) goes to the lookup thread, which waits within the caller's
//!   budget;
//! - after [`SLOW_IN_A_ROW`] batches in a row that each held the worker longer than
//!   [`SLOW_BATCH`] (their pages read from disk, not the OS's cache: after a restart, under
//!   memory pressure), every lookup goes to the thread for [`THREAD_FOR`], whose reads
//!   meanwhile bring the file back into the cache. One slow batch is not enough: measured by
//!   the clock, a batch is as slow when the worker was preempted during it (seen in the cold
//!   path bench, with the upstream on the same CPU), which says nothing about the file.

use super::{deliver, is_busy, look_up, Answers, Job, Map, Waits};
use crate::store::StoreResult;
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A batch that held the worker longer than this sends lookups to the thread for a while.
/// A lookup from the OS's cache takes microseconds; a batch of them (at most what one tick
/// queued) well under a millisecond.
pub(super) const SLOW_BATCH: Duration = Duration::from_millis(2);

/// How many slow batches in a row send lookups to the thread.
pub(super) const SLOW_IN_A_ROW: u32 = 4;

/// How long lookups go to the thread after [`SLOW_IN_A_ROW`] slow batches.
pub(super) const THREAD_FOR: Duration = Duration::from_secs(5);

/// The worker's part of the lookups: the queue in front of its task.
pub(super) struct OnWorker {
    shared: Arc<Shared>,
}

/// What the callers and the task share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the task for a batch's first lookup, and to close.
    flush: Notify,
    /// The lookup thread's queue, for the lookups this connection cannot answer; `None` once
    /// the store is dropped (the thread is then joined, which waits for this handle).
    thread: Mutex<Option<mpsc::Sender<Job>>>,
    /// Lookups answered here, and handed to the thread after `SQLITE_BUSY` (for the tests).
    answered: AtomicU64,
    handed_over: AtomicU64,
}

impl Shared {
    fn new(thread: mpsc::Sender<Job>) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            flush: Notify::new(),
            thread: Mutex::new(Some(thread)),
            answered: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
        }
    }

    /// Queues `jobs` for the lookup thread (once the store is dropped, nowhere: their callers
    /// find their channels dropped).
    fn to_thread(&self, jobs: impl IntoIterator<Item = Job>) {
        if let Some(thread) = lock(&self.thread).as_ref() {
            for job in jobs {
                let _ = thread.send(job);
            }
        }
    }
}

/// The lookups waiting for the task, and whether it takes any.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Lookups go to the thread until then (after slow batches).
    thread_until: Option<Instant>,
    /// Slow batches since the last one that was not.
    slow_in_a_row: u32,
    /// Set when the store is dropped (the task answers what is queued and ends) or the task
    /// has ended (see [`Closing`]).
    closed: bool,
}

impl Queue {
    /// True when a lookup made at `now` goes to the thread instead (the clock is read only
    /// while lookups go there after slow batches).
    fn for_thread(&mut self, now: impl FnOnce() -> Instant) -> bool {
        if let Some(until) = self.thread_until {
            if now() < until {
                return true;
            }
            self.thread_until = None;
        }
        self.closed
    }

    /// After a batch that took `took`, ending at `now`: the last of [`SLOW_IN_A_ROW`] slow
    /// ones sends lookups to the thread for [`THREAD_FOR`].
    fn after_batch(&mut self, took: Duration, now: Instant) {
        if took <= SLOW_BATCH {
            self.slow_in_a_row = 0;
            return;
        }
        self.slow_in_a_row += 1;
        if self.slow_in_a_row >= SLOW_IN_A_ROW {
            self.slow_in_a_row = 0;
            self.thread_until = Some(now + THREAD_FOR);
            tracing::info!(
                took_ms = took.as_millis() as u64,
                "SQLite lookups slow on the worker (file not in the OS's cache?): \
                 answered on the lookup thread for the next {}s",
                THREAD_FOR.as_secs()
            );
        }
    }
}

impl OnWorker {
    /// Starts the task on `runtime`: it answers on `conn` (a `query_only` connection, whose
    /// lock waits it turns off) and hands what it cannot answer to `thread`.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        conn: Connection,
        thread: mpsc::Sender<Job>,
        map: Map,
    ) -> StoreResult<Self> {
        conn.busy_timeout(Duration::ZERO)?;
        let shared = Arc::new(Shared::new(thread));
        runtime.spawn(serve(shared.clone(), conn, map));
        Ok(Self { shared })
    }

    /// Queues `job` for the worker, or gives it back when lookups go to the thread for now.
    pub(super) fn offer(&self, job: Job) -> Result<(), Job> {
        let mut queue = lock(&self.shared.queue);
        if queue.for_thread(Instant::now) {
            return Err(job);
        }
        let first = queue.jobs.is_empty();
        queue.jobs.push(job);
        drop(queue);
        if first {
            self.shared.flush.notify_one();
        }
        Ok(())
    }

    /// Lookups answered here, and handed to the thread after `SQLITE_BUSY`.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        (
            self.shared.answered.load(Ordering::Relaxed),
            self.shared.handed_over.load(Ordering::Relaxed),
        )
    }
}

impl Drop for OnWorker {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        *lock(&self.shared.thread) = None;
        self.shared.flush.notify_one();
    }
}

/// The task: a batch whenever lookups were queued, until closed.
async fn serve(shared: Arc<Shared>, conn: Connection, mut map: Map) {
    let shared = Closing(shared);
    // Swapped with the queue's, so neither side allocates a new one per batch.
    let mut batch = Vec::new();
    loop {
        shared.flush.notified().await;
        // The end of this tick: see the module comment.
        tokio::task::yield_now().await;
        let closed = {
            let mut queue = lock(&shared.queue);
            std::mem::swap(&mut queue.jobs, &mut batch);
            queue.closed
        };
        if !batch.is_empty() {
            let started = Instant::now();
            let answered = look_up(&conn, &mut batch, &mut map, Waits::Never);
            let now = Instant::now();
            lock(&shared.queue).after_batch(now - started, now);
            hand_out(&shared, answered);
        }
        if closed {
            return;
        }
    }
}

/// The task's hold on what it shares, which closes the queue when the task ends, however it
/// ends: a runtime shutting down drops its tasks, and the lookups queued for this one (and
/// every later one) then go to the thread.
struct Closing(Arc<Shared>);

impl std::ops::Deref for Closing {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        let left = {
            let mut queue = lock(&self.0.queue);
            queue.closed = true;
            std::mem::take(&mut queue.jobs)
        };
        self.0.to_thread(left);
    }
}

/// Completes the callers' channels, and hands the lookups that found the file locked to the
/// thread (a caller whose lookup can go nowhere finds its channel dropped: the store stopped).
fn hand_out(shared: &Shared, answered: Answers) {
    let found_busy = |(_, answer): &(Job, StoreResult<_>)| answer.as_ref().is_err_and(is_busy);
    if !answered.iter().any(found_busy) {
        shared
            .answered
            .fetch_add(answered.len() as u64, Ordering::Relaxed);
        return deliver(answered);
    }
    let (busy, done): (Answers, Answers) = answered.into_iter().partition(found_busy);
    shared
        .answered
        .fetch_add(done.len() as u64, Ordering::Relaxed);
    deliver(done);
    shared
        .handed_over
        .fetch_add(busy.len() as u64, Ordering::Relaxed);
    shared.to_thread(busy.into_iter().map(|(job, _)| job));
}

/// The mutex's data; a panic elsewhere while holding it leaves nothing half-done here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, StoreError};

    #[test]
    fn slow_batches_in_a_row_send_lookups_to_the_thread_for_a_while() {
        let mut queue = Queue::default();
        let now = Instant::now();
        let slow = SLOW_BATCH + Duration::from_millis(1);
        for _ in 0..SLOW_IN_A_ROW {
            queue.after_batch(SLOW_BATCH, now);
        }
        assert!(
            !queue.for_thread(|| now),
            "a batch at the bound is not slow"
        );
        for _ in 1..SLOW_IN_A_ROW {
            queue.after_batch(slow, now);
        }
        queue.after_batch(SLOW_BATCH, now);
        queue.after_batch(slow, now);
        assert!(
            !queue.for_thread(|| now),
            "a batch that was not slow starts the count again"
        );
        for _ in 1..SLOW_IN_A_ROW {
            queue.after_batch(slow, now);
        }
        assert!(queue.for_thread(|| now));
        assert!(queue.for_thread(|| now + THREAD_FOR - Duration::from_millis(1)));
        assert!(
            !queue.for_thread(|| now + THREAD_FOR),
            "back on the worker after a while"
        );
        assert!(!queue.for_thread(|| now), "and the clock is no longer read");
    }

    fn job(
        token: &str,
    ) -> (
        Job,
        tokio::sync::oneshot::Receiver<StoreResult<Option<Record>>>,
    ) {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            hash: crate::store::token_hash(token),
            deadline: Instant::now(),
            done,
        };
        (job, answer)
    }

    fn sqlite_error(code: i32) -> StoreError {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
    }

    #[test]
    fn a_lookup_that_found_the_file_locked_goes_to_the_thread_and_the_rest_are_answered() {
        let (to_thread, thread) = mpsc::channel();
        let shared = Shared::new(to_thread);
        let (locked, mut locked_answer) = job("locked");
        let (known, known_answer) = job("known");
        let (failed, failed_answer) = job("failed");
        hand_out(
            &shared,
            vec![
                (locked, Err(sqlite_error(rusqlite::ffi::SQLITE_BUSY))),
                (known, Ok(None)),
                (failed, Err(sqlite_error(rusqlite::ffi::SQLITE_CORRUPT))),
            ],
        );
        let handed = thread
            .try_recv()
            .expect("the locked lookup is on the thread's queue");
        assert_eq!(handed.hash, crate::store::token_hash("locked"));
        assert!(thread.try_recv().is_err(), "only that one");
        assert!(
            locked_answer.try_recv().is_err(),
            "not answered: the thread will"
        );
        assert!(matches!(known_answer.blocking_recv(), Ok(Ok(None))));
        assert!(
            matches!(
                failed_answer.blocking_recv(),
                Ok(Err(StoreError::Sqlite(_)))
            ),
            "any other error is the answer"
        );
        assert_eq!(
            (
                shared.answered.load(Ordering::Relaxed),
                shared.handed_over.load(Ordering::Relaxed)
            ),
            (2, 1)
        );
    }

    #[test]
    fn busy_and_locked_are_the_errors_that_wait_for_another_connection() {
        assert!(is_busy(&sqlite_error(rusqlite::ffi::SQLITE_BUSY)));
        assert!(is_busy(&sqlite_error(rusqlite::ffi::SQLITE_LOCKED)));
        assert!(!is_busy(&sqlite_error(rusqlite::ffi::SQLITE_IOERR)));
        assert!(!is_busy(&StoreError::Busy {
            waited: Duration::from_secs(2)
        }));
    }

    #[test]
    fn a_closed_queue_sends_lookups_to_the_thread() {
        let mut queue = Queue {
            closed: true,
            ..Queue::default()
        };
        assert!(queue.for_thread(Instant::now));
    }
}
