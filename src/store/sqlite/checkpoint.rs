//! WAL checkpoints off the writer's path: a thread with a connection of its own copies the
//! WAL back into the database file while the writer goes on committing.
//!
//! SQLite's automatic checkpoint runs in the connection that commits, right after the
//! commit that takes the WAL past its threshold: with the group-commit writer ([`super::batch`])
//! that meant every insert queued behind that commit waited for thousands of pages to be
//! copied (the token endpoint's p99 was that copy, 24–34 ms under load). Instead the writing
//! connection gets a WAL hook (`sqlite3_wal_hook`, which replaces the automatic checkpoint
//! on that connection) that, after a commit leaving [`Thresholds::nudge`] pages or more in
//! the WAL, nudges this thread; it runs a `PASSIVE` checkpoint, which never waits for the
//! writer or the readers and never makes them wait.
//!
//! A passive checkpoint copies what was committed before it began, and the WAL starts over
//! from its beginning only at a write that finds all of it copied: under a steady stream
//! of commits, new frames keep arriving while the thread copies. So the writer keeps a
//! bound of its own ([`Thresholds::writer`]): a commit that leaves that many pages runs a
//! passive checkpoint itself, as the automatic one did. By then the thread has copied
//! nearly everything, so the writer copies only the tail, and its next write starts the WAL
//! over: the file stays as bounded as before, and the writer's stall is short.
//!
//! Errors are not fatal: a checkpoint that fails or finds another running (another process
//! on the same file has its own) is tried again at the next nudge; a commit is never made
//! to fail by its hook.

use crate::store::{StoreError, StoreResult};
use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// WAL sizes, in pages, at which the two checkpoints start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Thresholds {
    /// The checkpoint thread is nudged (SQLite's default automatic checkpoint is at 1000).
    pub nudge: i32,
    /// The writer checkpoints itself (the WAL's bound while the thread cannot keep up).
    pub writer: i32,
}

/// What the checkpoint thread is told.
enum Order {
    Checkpoint,
    Stop,
}

/// The checkpoint thread; dropping it stops the thread (after the checkpoint it is running).
pub(super) struct Checkpointer {
    orders: SyncSender<Order>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
}

/// What the checkpoints have done so far, for tests to wait on.
#[derive(Default)]
#[cfg_attr(not(test), allow(dead_code))]
struct Progress {
    /// Passes the thread has run.
    passes: AtomicU64,
    /// The WAL's pages after the last commit.
    after_commit: AtomicU64,
    /// The WAL's pages and those of them copied back, as the thread's last pass found them.
    last_pass: AtomicU64,
}

/// Two page counts in one word.
fn pair(a: i32, b: i32) -> u64 {
    (u64::from(a as u32) << 32) | u64::from(b as u32)
}

impl Checkpointer {
    /// Opens a connection to `path` for the thread and starts it; `watch` connects it to the
    /// writing connection.
    pub(super) fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        // A checkpoint reads the WAL and writes the file through this connection's pager:
        // no page cache worth keeping.
        conn.pragma_update(None, "cache_size", 0)?;
        // One pending order is enough: a nudge while one waits adds nothing.
        let (orders, queue) = mpsc::sync_channel(1);
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &queue, &shared))
            .map_err(StoreError::ThreadStart)?;
        Ok(Self {
            orders,
            thread: Some(thread),
            progress,
        })
    }

    /// Replaces the automatic checkpoint of `writer` (the one connection that writes) by
    /// nudges to this thread, and a passive checkpoint of its own at `limits.writer` pages.
    pub(super) fn watch(&self, writer: &mut Connection, limits: Thresholds) -> StoreResult<()> {
        let orders = self.orders.clone();
        let progress = self.progress.clone();
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            progress.after_commit.store(pages as u64, Ordering::Relaxed);
            if pages >= limits.writer {
                // Busy when the thread is copying: the next commit tries again.
                let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
            } else if pages >= limits.nudge {
                match orders.try_send(Order::Checkpoint) {
                    Ok(()) | Err(TrySendError::Full(_)) => {}
                    // Stopped (the store is closing): the writer's own bound still holds.
                    Err(TrySendError::Disconnected(_)) => {
                        tracing::debug!("the SQLite checkpoint thread is gone");
                    }
                }
            }
            Ok(())
        }))?;
        Ok(())
    }

    /// The WAL's pages after the last commit.
    #[cfg(test)]
    pub(super) fn wal_after_commit(&self) -> u64 {
        self.progress.after_commit.load(Ordering::Relaxed)
    }

    /// Checkpoints the thread has run so far.
    #[cfg(test)]
    pub(super) fn passes(&self) -> u64 {
        self.progress.passes.load(Ordering::Relaxed)
    }

    /// The thread's last pass began after the last commit, and copied all of it back (the
    /// next commit starts the WAL over).
    #[cfg(test)]
    pub(super) fn caught_up(&self) -> bool {
        let wal = self.progress.after_commit.load(Ordering::Relaxed) as i32;
        wal > 0 && self.progress.last_pass.load(Ordering::Relaxed) == pair(wal, wal)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waits for room if a nudge is pending: the thread takes it, then this.
        let _ = self.orders.send(Order::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: a passive checkpoint per nudge until told to stop.
fn run(conn: &Connection, queue: &Receiver<Order>, progress: &Progress) {
    while let Ok(Order::Checkpoint) = queue.recv() {
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((wal, copied)) => {
                progress.passes.fetch_add(1, Ordering::Relaxed);
                progress
                    .last_pass
                    .store(pair(wal, copied), Ordering::Relaxed);
            }
            // Another checkpoint is running (the writer's, or another process's).
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
            Err(e) => tracing::warn!(error = %e, "SQLite WAL checkpoint failed"),
        }
    }
}
