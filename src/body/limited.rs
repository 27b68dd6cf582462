//! A streamed body under limits. A client's request body on its way to the upstream: at
//! most `limit` bytes, and no pause longer than `stall_timeout` while the gateway waits for
//! the client. Either breach fails the body, which makes the upstream client abort the
//! request; the gateway finds the [`BodyError`] in the failure and answers 413 or 408 (or,
//! if the response had already started, the connection is closed). An upstream's response
//! body on its way to the client: no size limit, and no pause longer than the route's
//! `timeout` (nginx's `proxy_read_timeout`), past which the client's connection is aborted,
//! so a stalled upstream cannot hold a client connection forever.
//!
//! An upstream's response body may come with its connection's [`Driver`]: the hyper path
//! runs its upstream connection in the request's own task, not in one of its own, so the
//! body's reader moves the connection on as it reads ([`LimitedBody::driven_by`]).
//!
//! The pause clock runs only while the body is asked for and the client has nothing to
//! give: time the upstream spends not reading (back-pressure) is not the client's.

use super::BodyError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What must be polled for a body to make progress: the connection it arrives over, when
/// that connection has no task of its own.
pub trait Driver: Send {
    /// Moves the connection on; `Ready` once it needs no more polling (it is done with,
    /// back in its pool or closed).
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// See the module docs.
pub struct LimitedBody {
    inner: Incoming,
    limit: u64,
    /// Bytes passed on so far.
    read: u64,
    stall_timeout: Duration,
    pause: PauseClock,
    /// The connection the body arrives over, while it needs polling.
    driver: Option<Box<dyn Driver>>,
    /// An upstream's failure waits for one turn of the runtime before it is passed on (see
    /// [`LimitedBody::poll_frame`]); the failure, while it waits.
    held_error: Option<hyper::Error>,
    /// The body has yielded to the runtime once (so a failure may be passed on at once).
    yielded: bool,
}

impl std::fmt::Debug for LimitedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedBody")
            .field("limit", &self.limit)
            .field("read", &self.read)
            .field("driven", &self.driver.is_some())
            .finish_non_exhaustive()
    }
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64, stall_timeout: Duration) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            stall_timeout,
            pause: PauseClock::default(),
            driver: None,
            held_error: None,
            yielded: true,
        }
    }

    /// The body polls `driver` (its connection) before each read, and once more at its
    /// end; dropped unfinished, the driver goes with it.
    pub fn driven_by(mut self, driver: Option<Box<dyn Driver>>) -> Self {
        self.driver = driver;
        self
    }

    /// Polls the driver, forgetting it once it is done.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = &mut self.driver {
            if driver.poll_drive(cx).is_ready() {
                self.driver = None;
            }
        }
    }

    /// An upstream's response body: no size limit, only the bound on each pause.
    pub fn paced(inner: Incoming, pause: Duration) -> Self {
        Self {
            yielded: false,
            ..Self::new(inner, u64::MAX, pause)
        }
    }
}

/// The clock of a body's pauses: it runs while the body waits for its peer, from the first
/// `Pending` of a wait, and is stopped by anything that arrives.
#[derive(Debug, Default)]
pub struct PauseClock {
    /// Made on the first wait (bodies that never wait never need one).
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl PauseClock {
    /// Starts the clock if it is not running, and says whether `limit` has run out since.
    pub fn stalled(&mut self, limit: Duration, cx: &mut Context<'_>) -> bool {
        let stall = match &mut self.stall {
            Some(stall) => {
                if !self.waiting {
                    stall.as_mut().reset(Instant::now() + limit);
                }
                stall
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(Instant::now() + limit))),
        };
        self.waiting = true;
        stall.as_mut().poll(cx).is_ready()
    }

    /// Something arrived: the next wait starts the clock afresh.
    pub fn progressed(&mut self) {
        self.waiting = false;
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(e) = this.held_error.take() {
            return Poll::Ready(Some(Err(BodyError::Peer(e))));
        }
        this.drive(cx);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                this.yielded = true;
                if this.pause.stalled(this.stall_timeout, cx) {
                    let timeout_ms = this.stall_timeout.as_millis();
                    return Poll::Ready(Some(Err(BodyError::Stalled { timeout_ms })));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.pause.progressed();
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.limit {
                        let limit = this.limit;
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // An upstream's body that fails before the body ever waited (its connection is
            // polled in this task, so the failure can arrive with the head): passed on after
            // one turn of the runtime, so that an HTTP/2 client gets the response head before
            // the stream's reset (h2 drops a stream's unsent frames when it is reset).
            Poll::Ready(Some(Err(e))) if !this.yielded => {
                this.yielded = true;
                this.held_error = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Peer(e)))),
            Poll::Ready(None) => {
                // The connection finishes its message with the body's end; one that cannot
                // yet (its request body still going) is closed with the driver.
                this.drive(cx);
                this.driver = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.driver.is_none() && self.held_error.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
