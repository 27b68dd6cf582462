//! A thread of its own that serves jobs from a queue, for the SQLite store's writer
//! ([`super::batch`]) and reader ([`super::lookups`]): callers queue a job carrying a
//! oneshot sender and await its answer; dropping the [`JobThread`] closes the queue and
//! waits for the thread, which answers what is still queued and ends.

use crate::store::{StoreError, StoreResult};
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The queue in front of a named thread that runs `serve` over it.
pub(super) struct JobThread<J> {
    /// `None` once dropping: closing it lets the thread finish.
    jobs: Option<mpsc::Sender<J>>,
    thread: Option<JoinHandle<()>>,
}

impl<J: Send + 'static> JobThread<J> {
    /// Starts thread `name`, which runs `serve` until the queue is closed and empty.
    pub fn start(
        name: &str,
        serve: impl FnOnce(mpsc::Receiver<J>) + Send + 'static,
    ) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(queue))
            .map_err(StoreError::ThreadStart)?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `job`, whose answer the caller awaits through the sender it carries.
    pub fn send(&self, job: J) -> StoreResult<()> {
        let queue = self.jobs.as_ref().ok_or(StoreError::ThreadStopped)?;
        queue.send(job).map_err(|_| StoreError::ThreadStopped)
    }

    /// A second handle on the queue, for a part that hands jobs over. The thread only ends
    /// once every handle is gone, so whoever holds one must drop it before this is dropped.
    pub fn queue(&self) -> Option<mpsc::Sender<J>> {
        self.jobs.clone()
    }

    /// Queues the job `make` builds around the answer's sender, and waits for the answer.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> J,
    ) -> StoreResult<T> {
        let (done, answer) = oneshot::channel();
        self.send(make(done))?;
        answer.await.map_err(|_| StoreError::ThreadStopped)?
    }
}

impl<J> Drop for JobThread<J> {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // The thread only returns once the queue is drained; a panic in it has already
            // failed its callers (their answers were dropped).
            let _ = thread.join();
        }
    }
}
