//! The access log's writer thread: formats entries and writes them through a buffer to
//! stdout or a file, flushing at least every [`FLUSH_EVERY`] and whenever it is asked to
//! (reopen, reconfigure, flush, stop).
//!
//! A thread of its own, not a tokio task: a slow disk or a full stdout pipe blocks only
//! this thread, never a worker that serves requests. Requests reach it over a bounded
//! channel and never wait for it (see `AccessLog::record`); orders come over a second,
//! unbounded channel and are answered on a oneshot.

use super::format;
use crate::config::{AccessTarget, LogFormat};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::Entry;

/// The longest a written line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Buffer size: large enough that a busy second costs few write calls.
const BUFFER: usize = 64 * 1024;
/// The writer's pause between batches while lines keep coming; the queue holds 8192
/// lines, so up to ~800 000 requests a second fit in one nap.
const NAP: Duration = Duration::from_millis(10);
/// A failing write is reported at most this often.
const ERROR_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Every handle is gone.
struct Disconnected;

/// What travels on the bounded channel: an entry, or `None` to look at the orders now.
pub(super) type Message = Option<Entry>;

/// What the handle asks of the writer, answered once done.
pub(super) enum Order {
    /// Write out what is queued, then open the file again by its path (after a rotation
    /// renamed it).
    Reopen(oneshot::Sender<io::Result<()>>),
    /// Write out what is queued, then write to `target` in `format` from the next line on.
    Apply {
        target: AccessTarget,
        format: LogFormat,
        done: oneshot::Sender<io::Result<()>>,
    },
    /// Write out everything received so far.
    Flush(oneshot::Sender<io::Result<()>>),
    /// Write out everything queued, then end the thread.
    Stop(oneshot::Sender<io::Result<()>>),
}

/// Where lines go.
pub(super) enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
    /// `off` after a reconfiguration: lines still queued are dropped.
    Nowhere,
}

impl Sink {
    /// Opens `target` (a file is created if missing and appended to).
    pub fn open(target: &AccessTarget) -> io::Result<Sink> {
        Ok(match target {
            AccessTarget::Stdout => Sink::Stdout(BufWriter::with_capacity(BUFFER, io::stdout())),
            AccessTarget::Off => Sink::Nowhere,
            AccessTarget::File(path) => Sink::File {
                path: path.clone(),
                file: BufWriter::with_capacity(BUFFER, open_append(path)?),
            },
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(bytes),
            Sink::File { file, .. } => file.write_all(bytes),
            Sink::Nowhere => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File { file, .. } => file.flush(),
            Sink::Nowhere => Ok(()),
        }
    }

    /// The file opened again by its path; stdout stays as it is.
    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = BufWriter::with_capacity(BUFFER, open_append(path)?);
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread's state.
pub(super) struct Writer {
    pub sink: Sink,
    pub format: LogFormat,
    pub lines: Receiver<Message>,
    pub orders: Receiver<Order>,
    line: String,
    /// Since when written lines wait in the buffer.
    dirty_since: Option<Instant>,
    last_error_report: Option<Instant>,
}

impl Writer {
    pub fn new(
        sink: Sink,
        format: LogFormat,
        lines: Receiver<Message>,
        orders: Receiver<Order>,
    ) -> Self {
        Writer {
            sink,
            format,
            lines,
            orders,
            line: String::with_capacity(512),
            dirty_since: None,
            last_error_report: None,
        }
    }

    /// Runs until stopped, or until every handle is gone (then flushes and ends).
    ///
    /// While lines keep coming it naps [`NAP`] between batches instead of waiting on the
    /// channel: a sender wakes a waiting receiver with a system call, which under load
    /// would cost one per request; a napping writer costs the senders nothing. When a nap
    /// brought nothing it waits on the channel again, so an idle server sleeps.
    pub fn run(mut self) {
        let mut busy = false;
        loop {
            let received = if busy {
                std::thread::sleep(NAP);
                self.write_queued()
            } else {
                let wait = match self.dirty_since {
                    Some(since) => FLUSH_EVERY.saturating_sub(since.elapsed()),
                    None => FLUSH_EVERY,
                };
                match self.lines.recv_timeout(wait) {
                    Ok(Some(entry)) => {
                        self.write(&entry);
                        self.write_queued().map(|n| n + 1)
                    }
                    Ok(None) | Err(RecvTimeoutError::Timeout) => Ok(0),
                    Err(RecvTimeoutError::Disconnected) => Err(Disconnected),
                }
            };
            let Ok(received) = received else {
                let result = self.flush();
                self.report(result);
                return;
            };
            busy = received > 0;
            if let Some(stopped) = self.obey_orders() {
                let result = self.drain_and_flush();
                // Gone before the answer: a line recorded after `close` is counted as dropped.
                drop(self);
                let _ = stopped.send(result);
                return;
            }
            if self.dirty_since.is_some_and(|s| s.elapsed() >= FLUSH_EVERY) {
                let result = self.flush();
                self.report(result);
            }
        }
    }

    /// Writes every line waiting in the channel; how many, or `Disconnected` once every
    /// handle is gone.
    fn write_queued(&mut self) -> Result<usize, Disconnected> {
        let mut written = 0;
        loop {
            match self.lines.try_recv() {
                Ok(Some(entry)) => {
                    self.write(&entry);
                    written += 1;
                }
                Ok(None) => {}
                Err(TryRecvError::Empty) => return Ok(written),
                Err(TryRecvError::Disconnected) => return Err(Disconnected),
            }
        }
    }

    /// Carries out waiting orders; a stop order is handed back for `run` to carry out.
    fn obey_orders(&mut self) -> Option<oneshot::Sender<io::Result<()>>> {
        loop {
            let order = match self.orders.try_recv() {
                Ok(order) => order,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
            };
            match order {
                // Lines recorded before the order go where lines went before it.
                Order::Reopen(done) => {
                    let result = self.drain_and_flush().and_then(|()| self.sink.reopen());
                    let _ = done.send(result);
                }
                Order::Apply {
                    target,
                    format,
                    done,
                } => {
                    let result = self.drain_and_flush().and_then(|()| {
                        self.sink = Sink::open(&target)?;
                        self.format = format;
                        Ok(())
                    });
                    let _ = done.send(result);
                }
                Order::Flush(done) => {
                    let _ = done.send(self.drain_and_flush());
                }
                Order::Stop(done) => return Some(done),
            }
        }
    }

    /// Writes every line already queued, then flushes.
    fn drain_and_flush(&mut self) -> io::Result<()> {
        while let Ok(message) = self.lines.try_recv() {
            if let Some(entry) = message {
                self.write(&entry);
            }
        }
        self.flush()
    }

    fn write(&mut self, entry: &Entry) {
        self.line.clear();
        match self.format {
            LogFormat::Json => format::json(entry, &mut self.line),
            LogFormat::Combined => format::combined(entry, &mut self.line),
        }
        let result = self.sink.write(self.line.as_bytes());
        if result.is_ok() && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.report(result);
    }

    fn flush(&mut self) -> io::Result<()> {
        self.dirty_since = None;
        self.sink.flush()
    }

    /// Logs a failed write or flush (at most every [`ERROR_REPORT_EVERY`]).
    fn report(&mut self, result: io::Result<()>) {
        let Err(e) = result else { return };
        if self
            .last_error_report
            .is_some_and(|at| at.elapsed() < ERROR_REPORT_EVERY)
        {
            return;
        }
        self.last_error_report = Some(Instant::now());
        tracing::error!(error = %e, "cannot write the access log");
    }
}
