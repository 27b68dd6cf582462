//! Connection deadlines on the hyper path: a request head must arrive within
//! `request_head_timeout` (counted from the connection's start for its first request,
//! from the head's first byte for later ones), and a connection with no request in flight
//! is closed after `keepalive_timeout`, over HTTP/1.1 and HTTP/2 alike.
//!
//! Why not hyper's own settings: hyper's HTTP/1 `header_read_timeout` starts when a
//! connection goes idle, so one timer covers both the idle wait and the head: set to the
//! head timeout it closes keep-alive connections early, set to the keep-alive timeout it
//! gives a slow head that long. hyper's HTTP/2 keep-alive only pings (it finds dead peers,
//! not idle ones), and nothing closes an HTTP/2 connection without streams. So the
//! connection is watched instead: [`Watched`], around the socket, sees the first byte of
//! each head and tells HTTP/2 from HTTP/1 by the preface; [`Activity::begin`], called as
//! the service starts a request, and the [`InFlight`] guard it returns, which rides in the
//! response body until hyper drops it, see requests start and end.
//!
//! The watcher keeps one timer for the connection's life and moves it, and a request's end
//! does not wake it: while requests are in flight the timer is set one `keepalive_timeout`
//! ahead, no later than the idle deadline of any request that ends after it was set, so
//! it finds the new idle phase when it fires and moves on to that deadline. Only a change
//! that brings a deadline nearer than the timer (a head's first byte, the HTTP/2 preface,
//! an end after a reload shortened `keepalive_timeout`) wakes it. Over HTTP/2 a request
//! then costs the watcher nothing; waking it at each end to make a timer anew cost about
//! 1,400 instructions a request (`benches/callgrind_proxy.sh`).
//!
//! One imprecision, bounded: a head that hyper already holds behind a pipelined request
//! (read with the request before it) starts no head clock, so it counts as idle time and
//! gets `keepalive_timeout`.
//!
//! On expiry ([`Activity::expired`]): a late head, or an idle HTTP/1 connection, is closed
//! at once (an idle HTTP/1.1 connection has nothing to finish, a half-sent head nothing to
//! answer, as with hyper's own timeout); an idle HTTP/2 connection gets a graceful
//! shutdown (GOAWAY, so the client knows not to start a stream on it), and is closed
//! outright if that has not finished `request_head_timeout` later.

use super::write_through::write_through_to_inner;
use super::SharedLimits;
use crate::config::Limits;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The HTTP/2 client preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the connection must do now that a deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Drop the connection.
    Close,
    /// Start a graceful shutdown (HTTP/2 GOAWAY) and keep serving until it ends.
    GoAway,
}

/// Which protocol the client speaks, as far as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// This many bytes of the HTTP/2 preface have been seen so far.
    Unknown(usize),
    Http1,
    Http2,
}

/// Where the connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A head is due: since the connection started, or since a head's first byte.
    Head(Instant),
    /// No request in flight since then.
    Idle(Instant),
    /// Requests are in flight; their own limits apply.
    Busy,
}

#[derive(Debug)]
struct State {
    protocol: Protocol,
    phase: Phase,
    in_flight: usize,
    /// When an HTTP/2 graceful shutdown began.
    going_away: Option<Instant>,
    /// When the watcher's timer fires next ([`Activity::expired`]); `None` before it is set.
    armed: Option<Instant>,
}

/// One connection's activity, shared by its socket, its service and its timer.
#[derive(Debug)]
pub struct Activity {
    /// Read at each deadline, so a reload's limits apply from the next request.
    limits: Arc<SharedLimits>,
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier.
    changed: Notify,
}

// === impl Activity ===

impl Activity {
    /// A connection whose first head has been due since `since`.
    pub fn new(limits: Arc<SharedLimits>, since: Instant) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::new(State {
                protocol: Protocol::Unknown(0),
                phase: Phase::Head(since),
                in_flight: 0,
                going_away: None,
                armed: None,
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under any panic (each update is one assignment).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request's head has arrived; the guard marks its end when dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.state();
        state.in_flight += 1;
        state.phase = Phase::Busy;
        // No wake-up: the timer finds the connection busy when it next fires.
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            let now = Instant::now();
            state.phase = Phase::Idle(now);
            // The timer, set while the request was in flight, fires no later than the idle
            // deadline: it finds this phase then. Only a nearer deadline needs a wake-up.
            let due = now + self.limits.get().keepalive_timeout;
            let in_time = state.armed.is_some_and(|armed| armed <= due);
            drop(state);
            if !in_time {
                self.changed.notify_one();
            }
        }
    }

    /// Bytes arrived from the client. Returns false once the client is known to speak
    /// HTTP/2, whose later bytes change nothing here (frames between streams do not start
    /// a head), so the socket need not report them.
    fn received(&self, bytes: &[u8]) -> bool {
        let mut state = self.state();
        if let Protocol::Unknown(seen) = state.protocol {
            state.protocol = detect(seen, bytes);
            if state.protocol == Protocol::Http2 && state.in_flight == 0 {
                // The preface is HTTP/2's "head"; from here only idleness counts.
                state.phase = Phase::Idle(Instant::now());
                drop(state);
                self.changed.notify_one();
                return false;
            }
        }
        match (state.protocol, state.phase) {
            (Protocol::Http2, _) => false,
            (Protocol::Http1, Phase::Idle(_)) => {
                state.phase = Phase::Head(Instant::now());
                drop(state);
                self.changed.notify_one();
                true
            }
            _ => true,
        }
    }

    /// The graceful shutdown asked for by [`Expiry::GoAway`] has begun.
    pub fn going_away(&self) {
        self.state().going_away = Some(Instant::now());
    }

    /// The next deadline and what is due then; `None` while requests are in flight.
    #[cfg(test)]
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        deadline_of(&self.state(), &self.limits.get())
    }

    /// When the watcher's timer is to fire next (recorded as armed), or what is due now.
    /// While requests are in flight: one `keepalive_timeout` from `now`, no later than the
    /// idle deadline of a request that ends after `now` (see the module docs).
    fn next_wake(&self, now: Instant) -> Result<Instant, Expiry> {
        let mut state = self.state();
        let limits = self.limits.get();
        let at = match deadline_of(&state, &limits) {
            Some((at, expiry)) if at <= now => return Err(expiry),
            Some((at, _)) => at,
            None => now + limits.keepalive_timeout,
        };
        state.armed = Some(at);
        Ok(at)
    }

    /// Resolves when a deadline passes; never while a request is in flight.
    pub async fn expired(&self) -> Expiry {
        // One timer, moved (a later deadline only updates it in place), not made anew.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        loop {
            // Created before the state is read, so a change in between is not missed
            // (`notify_one` leaves a permit when nobody waits).
            let changed = self.changed.notified();
            match self.next_wake(Instant::now()) {
                Err(expiry) => return expiry,
                Ok(at) => timer.as_mut().reset(at),
            }
            tokio::select! {
                _ = changed => {}
                _ = &mut timer => {}
            }
        }
    }
}

/// The next deadline of a connection in `state` under `limits`, and what is due then;
/// `None` while requests are in flight.
fn deadline_of(state: &State, limits: &Limits) -> Option<(Instant, Expiry)> {
    if let Some(since) = state.going_away {
        return Some((since + limits.request_head_timeout, Expiry::Close));
    }
    match state.phase {
        Phase::Busy => None,
        Phase::Head(since) => Some((since + limits.request_head_timeout, Expiry::Close)),
        Phase::Idle(since) => {
            let expiry = match state.protocol {
                Protocol::Http2 => Expiry::GoAway,
                Protocol::Http1 | Protocol::Unknown(_) => Expiry::Close,
            };
            Some((since + limits.keepalive_timeout, expiry))
        }
    }
}

/// How far `bytes`, following `seen` bytes that matched, go on matching the HTTP/2 preface.
fn detect(seen: usize, bytes: &[u8]) -> Protocol {
    let rest = &H2_PREFACE[seen..];
    let n = rest.len().min(bytes.len());
    if rest[..n] != bytes[..n] {
        Protocol::Http1
    } else if seen + n == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Unknown(seen + n)
    }
}

/// Marks a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request in flight until hyper has sent it (or given up).
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client stream whose reads are reported to its [`Activity`].
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// Reads are still reported: false once the client turned out to speak HTTP/2.
    reporting: bool,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            reporting: true,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), true) = (&result, this.reporting) {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.reporting = this.activity.received(new);
            }
        }
        result
    }
}

// Writes are not watched: they go straight to the inner stream.
write_through_to_inner!(Watched);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::time::Duration;

    fn limits() -> Arc<SharedLimits> {
        SharedLimits::new(Limits {
            max_connections: 1,
            request_head_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            max_request_body: 1,
            request_body_timeout: Duration::from_secs(30),
        })
    }

    #[test]
    fn the_preface_is_recognised_across_reads_and_anything_else_is_http1() {
        assert_eq!(detect(0, b"PRI * HTTP/2.0\r\n"), Protocol::Unknown(16));
        assert_eq!(detect(16, b"\r\nSM\r\n\r\n\0\0"), Protocol::Http2);
        assert_eq!(detect(0, b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(detect(0, b"PRI * HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(detect(0, b"P"), Protocol::Unknown(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_head_is_due_from_the_start_and_an_idle_http1_connection_after_keepalive() {
        let start = Instant::now();
        let activity = Activity::new(limits(), start);
        assert_eq!(activity.expired().await, Expiry::Close);
        assert_eq!(start.elapsed(), Duration::from_secs(30));

        let activity = Activity::new(limits(), Instant::now());
        let request = activity.begin();
        assert!(activity.deadline().is_none(), "no deadline while busy");
        drop(request);
        let idle = Instant::now();
        assert_eq!(activity.expired().await, Expiry::Close);
        assert_eq!(idle.elapsed(), Duration::from_secs(60));
    }

    /// Runs [`Activity::expired`] in a task of its own, as the connection does, and lets it
    /// set its timer before going on.
    async fn watch(activity: &Arc<Activity>) -> tokio::task::JoinHandle<Expiry> {
        let activity = activity.clone();
        let watcher = tokio::spawn(async move { activity.expired().await });
        tokio::task::yield_now().await;
        watcher
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_under_a_watching_timer_still_gets_the_whole_keepalive() {
        let activity = Activity::new(limits(), Instant::now());
        activity.received(H2_PREFACE);
        let request = activity.begin();
        let watcher = watch(&activity).await;
        tokio::time::advance(Duration::from_secs(45)).await;
        // No wake-up: the timer set while busy (at 60 s) finds the idle phase and moves on.
        drop(request);
        let idle = Instant::now();
        assert_eq!(watcher.await.expect("watcher"), Expiry::GoAway);
        assert_eq!(idle.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_ending_after_a_reload_shortened_keepalive_moves_the_timer_nearer() {
        let limits = limits();
        let activity = Activity::new(limits.clone(), Instant::now());
        activity.received(H2_PREFACE);
        let request = activity.begin();
        let watcher = watch(&activity).await;
        limits.set(Limits {
            keepalive_timeout: Duration::from_secs(10),
            ..limits.get()
        });
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(request);
        let idle = Instant::now();
        assert_eq!(watcher.await.expect("watcher"), Expiry::GoAway);
        assert_eq!(idle.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_started_while_idle_gets_the_head_timeout() {
        let activity = Activity::new(limits(), Instant::now());
        assert!(
            activity.received(b"GET / HTTP/1.1\r\n\r\n"),
            "HTTP/1 heads are watched"
        );
        drop(activity.begin());
        tokio::time::advance(Duration::from_secs(50)).await;
        activity.received(b"GET /next HT");
        let head = Instant::now();
        assert_eq!(activity.expired().await, Expiry::Close);
        assert_eq!(head.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_http2_connection_goes_away_and_frames_do_not_start_a_head() {
        let activity = Activity::new(limits(), Instant::now());
        assert!(!activity.received(H2_PREFACE), "later reads need no report");
        drop(activity.begin());
        let idle = Instant::now();
        tokio::time::advance(Duration::from_secs(40)).await;
        assert!(!activity.received(b"\0\0\0\x06\0\0\0\0\0"));
        assert_eq!(activity.expired().await, Expiry::GoAway);
        assert_eq!(idle.elapsed(), Duration::from_secs(60));
        activity.going_away();
        assert_eq!(activity.expired().await, Expiry::Close);
        assert_eq!(idle.elapsed(), Duration::from_secs(90));
    }
}
