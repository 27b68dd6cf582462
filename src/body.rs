//! The one response/request body type the server speaks: either bytes we made, or a
//! body streaming from the other side (never buffered).

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A body we produced (JSON, HTML, metrics) or one we stream through.
#[derive(Debug)]
pub enum Body {
    /// Bytes held in memory; `None` once sent.
    Full(Option<Bytes>),
    /// A body streaming from a peer, passed on frame by frame.
    Stream(Incoming),
    /// An upstream's response body, passed on frame by frame while it keeps coming.
    Upstream(Paced),
}

/// Why a streamed body failed. Either way the receiving side's connection is aborted (its
/// head is already out), so the client cannot take the body for a whole one.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Peer(#[from] hyper::Error),
    #[error("no body bytes from the upstream for {} ms", .0.as_millis())]
    Stalled(Duration),
}

/// An upstream's response body with a bound on each pause between two frames (nginx's
/// `proxy_read_timeout`): a stalled upstream cannot hold a client connection forever.
/// The timer is made and armed only when a frame is not ready at once.
#[derive(Debug)]
pub struct Paced {
    inner: Incoming,
    pause: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
}

impl Body {
    pub fn empty() -> Self {
        Body::Full(None)
    }

    pub fn from_static(s: &'static str) -> Self {
        Body::Full(Some(Bytes::from_static(s.as_bytes())))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::Full(Some(Bytes::from(s)))
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::Full(Some(Bytes::from(v)))
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Stream(b)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Body::Stream(incoming) => Pin::new(incoming).poll_frame(cx).map_err(BodyError::Peer),
            Body::Upstream(paced) => paced.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.as_ref().is_none_or(|b| b.is_empty()),
            Body::Stream(incoming) => incoming.is_end_stream(),
            Body::Upstream(paced) => paced.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(incoming) => incoming.size_hint(),
            Body::Upstream(paced) => paced.inner.size_hint(),
        }
    }
}

// === impl Paced ===

impl Paced {
    /// `body`, failing when a wait for its next frame lasts `pause`.
    pub fn new(body: Incoming, pause: Duration) -> Self {
        Paced {
            inner: body,
            pause,
            timer: None,
            armed: false,
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        use http_body::Body as _;
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Peer)));
        }
        if !self.armed {
            let deadline = Instant::now() + self.pause;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        match self.timer.as_mut().map(|timer| timer.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(BodyError::Stalled(self.pause)))),
            Some(Poll::Pending) | None => Poll::Pending,
        }
    }
}
