//! The access log: one line per request on the public and TLS listeners, written after
//! the response (its last byte, or the client going away), off the request path.
//!
//! A request hands its [`Entry`] to [`AccessLog::record`], which never waits: the entry goes
//! into a bounded channel, and when the writer has fallen that far behind the entry is
//! dropped and counted in `tollgate_access_log_dropped_total` rather than slowing requests
//! down. The writer thread (`writer`) formats ([`mod@format`]) and writes through a buffer,
//! flushed at least every second, on [`AccessLog::flush`], and on [`AccessLog::close`] (what
//! a graceful stop calls once the listeners have drained, so no line is lost).
//!
//! What an entry can hold is the whole privacy rule: the path without its query string,
//! the `User-Agent`, the request id, and identities by name (`sub`, `client_id`); never a
//! token, a secret, a password, a code, a query string or any other header.
//!
//! The internal listener (`/verify`, `/metrics`, probes) is not logged: the contract's access
//! log is the public and TLS listeners', and the probes would drown it.
//!
//! Reload: [`AccessLog::reopen`] opens the file again by its path (after a rotation renamed
//! it); [`AccessLog::apply`] switches target and format to a reloaded `[log]`.

pub mod format;
mod writer;

use crate::config::{AccessTarget, LogConfig};
use crate::gateway::headers::HeaderView;
use crate::verify::Principal;
use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{Method, StatusCode, Version};
use prometheus::IntCounter;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use writer::{Order, Sink, Writer};

pub use writer::FLUSH_EVERY;

/// Entries that may wait for the writer; past this, new ones are dropped and counted.
const QUEUE: usize = 8192;

/// The longest `User-Agent` kept; the rest is cut (a log line is not a place for 8 KiB).
const MAX_USER_AGENT: usize = 256;

/// One request as the access log sees it.
#[derive(Debug)]
pub struct Entry {
    /// When the request head was taken.
    pub time: SystemTime,
    pub method: Method,
    pub version: Version,
    /// The path as the client sent it, without the query string.
    pub path: String,
    /// The client ([`crate::client_addr`]): the peer, or the trusted proxy's client.
    pub client_addr: IpAddr,
    pub request_id: HeaderValue,
    /// A copy of the `User-Agent` value (at most [`MAX_USER_AGENT`] bytes, as sent: the
    /// formatter checks and escapes it on the writer thread).
    pub user_agent: Option<Bytes>,
    /// The route's name, or `_oauth`, `_none`.
    pub route: Option<Arc<str>>,
    /// The verified token's identity on a guarded route.
    pub principal: Option<Principal>,
    /// The upstream target last tried (its URL, credentials redacted).
    pub upstream: Option<Arc<str>>,
    /// How long that upstream took to send its response head.
    pub upstream_time: Option<Duration>,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// From the request head to the end of the response.
    pub duration: Duration,
}

/// What the gateway's phases learn of a request on its way, for its [`Entry`].
#[derive(Debug, Default)]
pub struct Notes {
    pub route: Option<Arc<str>>,
    pub principal: Option<Principal>,
    pub upstream: Option<Arc<str>>,
    pub upstream_time: Option<Duration>,
}

/// The handle requests and the reload use; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// False while `[log] access = "off"`: requests then build no entry at all.
    enabled: AtomicBool,
    /// `None` wakes the writer to look at its orders.
    lines: SyncSender<writer::Message>,
    orders: mpsc::Sender<Order>,
    /// The writer, not yet running, while the log has been off since the start: no thread
    /// until a reload turns it on (a thread in a process is not free: with a second one,
    /// every system call on a socket takes the file table's shared path).
    parked: Mutex<Option<Writer>>,
    dropped: IntCounter,
}

// === impl Entry ===

impl Entry {
    /// An entry for a request whose head just arrived (status and sizes come later).
    pub fn begin(
        method: &Method,
        version: Version,
        path: &str,
        headers: &impl HeaderView,
        client_addr: IpAddr,
        request_id: &HeaderValue,
    ) -> Entry {
        let user_agent = headers.first(USER_AGENT).map(|bytes| {
            // A copy: the request's own buffer is not kept alive by the log.
            Bytes::copy_from_slice(&bytes[..bytes.len().min(MAX_USER_AGENT)])
        });
        Entry {
            time: SystemTime::now(),
            method: method.clone(),
            version,
            path: path.to_string(),
            client_addr,
            request_id: request_id.clone(),
            user_agent,
            route: None,
            principal: None,
            upstream: None,
            upstream_time: None,
            status: 0,
            bytes_sent: 0,
            duration: Duration::ZERO,
        }
    }

    /// Takes what the gateway learned.
    pub fn note(&mut self, notes: Notes) {
        self.route = notes.route;
        self.principal = notes.principal;
        self.upstream = notes.upstream;
        self.upstream_time = notes.upstream_time;
    }

    /// Completes the entry: the response's status, its body bytes, and the time since
    /// `started`.
    pub fn finish(&mut self, status: StatusCode, bytes_sent: u64, started: Instant) {
        self.status = status.as_u16();
        self.bytes_sent = bytes_sent;
        self.duration = started.elapsed();
    }
}

// === impl AccessLog ===

impl AccessLog {
    /// Opens the target (a file must be writable now) and starts the writer thread, or
    /// keeps it parked while `access = "off"`.
    /// `dropped` counts entries refused because the writer was `QUEUE` (8192) entries behind.
    pub fn start(config: &LogConfig, dropped: IntCounter) -> io::Result<AccessLog> {
        let sink = Sink::open(&config.access)?;
        let (lines, lines_rx) = mpsc::sync_channel(QUEUE);
        let (orders, orders_rx) = mpsc::channel();
        let writer = Writer::new(sink, config.format, lines_rx, orders_rx);
        let on = config.access != AccessTarget::Off;
        let parked = if on {
            run_writer(writer)?;
            None
        } else {
            Some(writer)
        };
        Ok(AccessLog {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(on),
                lines,
                orders,
                parked: Mutex::new(parked),
                dropped,
            }),
        })
    }

    /// A handle whose writer never reads (its channel ends are handed back): for tests
    /// of what requests do when the writer is stuck.
    #[cfg(test)]
    fn stuck(
        capacity: usize,
        dropped: IntCounter,
    ) -> (
        AccessLog,
        mpsc::Receiver<writer::Message>,
        mpsc::Receiver<Order>,
    ) {
        let (lines, lines_rx) = mpsc::sync_channel(capacity);
        let (orders, orders_rx) = mpsc::channel();
        let log = AccessLog {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(true),
                lines,
                orders,
                parked: Mutex::new(None),
                dropped,
            }),
        };
        (log, lines_rx, orders_rx)
    }

    /// Whether requests should build entries (false while `access = "off"`).
    pub fn enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Relaxed)
    }

    /// Queues `entry` for the writer without waiting; a full queue drops it and counts it.
    pub fn record(&self, entry: Entry) {
        if !self.enabled() {
            return;
        }
        match self.inner.lines.try_send(Some(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.dropped.inc();
            }
        }
    }

    /// Opens the log file again by its path, after everything before was flushed to the
    /// old one: what SIGHUP does once logrotate has renamed the file. Stdout stays as is.
    pub async fn reopen(&self) -> io::Result<()> {
        self.order(Order::Reopen).await
    }

    /// Switches to a reloaded `[log]`: lines of requests that finish from now on go to its
    /// target in its format (a file is opened, so this also reopens).
    pub async fn apply(&self, config: &LogConfig) -> io::Result<()> {
        if config.access != AccessTarget::Off {
            self.unpark()?;
        }
        let target = config.access.clone();
        let format = config.format;
        let result = self
            .order(|done| Order::Apply {
                target,
                format,
                done,
            })
            .await;
        if result.is_ok() {
            self.inner
                .enabled
                .store(config.access != AccessTarget::Off, Ordering::Relaxed);
        }
        result
    }

    /// Writes out every entry recorded so far.
    pub async fn flush(&self) -> io::Result<()> {
        self.order(Order::Flush).await
    }

    /// Writes out every entry recorded so far and ends the writer; later entries are
    /// dropped (and counted). Called by a graceful stop after the drain.
    pub async fn close(&self) -> io::Result<()> {
        self.order(Order::Stop).await
    }

    async fn order(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Order,
    ) -> io::Result<()> {
        if self.parked().is_some() {
            // Never on: nothing was written, so there is nothing to flush, reopen or stop
            // (and `apply` to "off" changes nothing).
            return Ok(());
        }
        let closed = || io::Error::other("the access log writer has stopped");
        let (done, answer) = oneshot::channel();
        self.inner.orders.send(make(done)).map_err(|_| closed())?;
        // A full queue means the writer is busy, and it looks at its orders after each line.
        let _ = self.inner.lines.try_send(None);
        answer.await.map_err(|_| closed())?
    }
}

impl AccessLog {
    /// The parked writer, if it never started.
    fn parked(&self) -> std::sync::MutexGuard<'_, Option<Writer>> {
        // The guarded value is a plain `Option`: a panic elsewhere cannot leave it half-made.
        self.inner
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the parked writer's thread (a no-op once running).
    fn unpark(&self) -> io::Result<()> {
        let mut parked = self.parked();
        match parked.take() {
            Some(writer) => run_writer(writer),
            None => Ok(()),
        }
    }
}

/// Runs `writer` on a thread of its own.
fn run_writer(writer: Writer) -> io::Result<()> {
    std::thread::Builder::new()
        .name("access-log".to_string())
        .spawn(move || writer.run())
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    fn entry(path: &str) -> Entry {
        let mut e = Entry::begin(
            &Method::GET,
            Version::HTTP_11,
            path,
            &http::HeaderMap::new(),
            "127.0.0.1".parse().expect("address"),
            &HeaderValue::from_static("rid"),
        );
        e.finish(StatusCode::OK, 2, Instant::now());
        e
    }

    fn file_log(path: &std::path::Path) -> (AccessLog, IntCounter) {
        let dropped = IntCounter::new("dropped", "test").expect("valid");
        let config = LogConfig {
            access: AccessTarget::File(path.to_path_buf()),
            format: LogFormat::Json,
        };
        (
            AccessLog::start(&config, dropped.clone()).expect("starts"),
            dropped,
        )
    }

    #[tokio::test]
    async fn reopen_after_a_rename_writes_to_a_new_file_at_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let (log, dropped) = file_log(&path);
        log.record(entry("/before"));
        log.flush().await.expect("flushed");
        std::fs::rename(&path, &rotated).expect("rename");
        // Until reopened, lines still go to the renamed file (as with nginx).
        log.record(entry("/between"));
        log.reopen().await.expect("reopened");
        log.record(entry("/after"));
        log.close().await.expect("closed");
        let old = std::fs::read_to_string(&rotated).expect("rotated file");
        let new = std::fs::read_to_string(&path).expect("new file");
        assert!(
            old.contains("\"/before\"") && old.contains("\"/between\""),
            "{old}---{new}"
        );
        assert!(!old.contains("\"/after\""), "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"/after\""), "{new}");
        assert_eq!(dropped.get(), 0);
        // Closed: entries are counted, not written.
        log.record(entry("/late"));
        assert_eq!(dropped.get(), 1);
    }

    #[test]
    fn a_stuck_writer_drops_and_counts_entries_and_never_blocks_a_request() {
        let dropped = IntCounter::new("dropped", "test").expect("valid");
        let (log, _lines, _orders) = AccessLog::stuck(4, dropped.clone());
        let started = Instant::now();
        for i in 0..10 {
            log.record(entry(&format!("/{i}")));
        }
        assert_eq!(dropped.get(), 6, "4 queued, the rest dropped");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn lines_are_flushed_within_a_second_without_being_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let (log, _) = file_log(&path);
        log.record(entry("/soon"));
        let deadline = Instant::now() + FLUSH_EVERY * 3;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains("\"/soon\"") {
                break;
            }
            assert!(Instant::now() < deadline, "not flushed within 3 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_log_off_from_the_start_runs_no_writer_until_a_reload_turns_it_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let dropped = IntCounter::new("dropped", "test").expect("valid");
        let off = LogConfig {
            access: AccessTarget::Off,
            format: LogFormat::Json,
        };
        let log = AccessLog::start(&off, dropped.clone()).expect("starts");
        assert!(log.parked().is_some(), "no writer thread while off");
        log.record(entry("/off"));
        log.flush().await.expect("nothing to flush");
        log.reopen().await.expect("nothing to reopen");
        log.apply(&off).await.expect("still off");
        assert!(log.parked().is_some());
        let on = LogConfig {
            access: AccessTarget::File(path.clone()),
            format: LogFormat::Json,
        };
        log.apply(&on).await.expect("turned on");
        assert!(log.parked().is_none(), "the writer runs");
        log.record(entry("/on"));
        log.close().await.expect("closed");
        let text = std::fs::read_to_string(&path).expect("log file");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"/on\""), "{text}");
        assert_eq!(dropped.get(), 0);
    }

    #[tokio::test]
    async fn apply_switches_format_and_off_stops_entries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        let (log, _) = file_log(&path);
        log.record(entry("/json"));
        let combined = LogConfig {
            access: AccessTarget::File(path.clone()),
            format: LogFormat::Combined,
        };
        log.apply(&combined).await.expect("applied");
        log.record(entry("/combined"));
        let off = LogConfig {
            access: AccessTarget::Off,
            format: LogFormat::Json,
        };
        log.apply(&off).await.expect("applied");
        assert!(!log.enabled());
        log.record(entry("/off"));
        log.close().await.expect("closed");
        let text = std::fs::read_to_string(&path).expect("log file");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with('{') && lines[0].contains("\"/json\""));
        assert!(
            lines[1].contains("\"GET /combined HTTP/1.1\" 200 2"),
            "{text}"
        );
    }
}
