//! A streamed body under limits. A client's request body on its way to the upstream: at
//! most `limit` bytes, and no pause longer than `stall_timeout` while the gateway waits for
//! the client. Either breach fails the body, which makes the upstream client abort the
//! request; the gateway finds the [`BodyError`] in the failure and answers 413 or 408 (or,
//! if the response had already started, the connection is closed). An upstream's response
//! body on its way to the client: no size limit, and no pause longer than the route's
//! `timeout` (nginx's `proxy_read_timeout`), past which the client's connection is aborted,
//! so a stalled upstream cannot hold a client connection forever.
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

/// See the module docs.
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    limit: u64,
    /// Bytes passed on so far.
    read: u64,
    stall_timeout: Duration,
    /// Armed while waiting for the client; made on the first wait (body-less requests
    /// never need one).
    stall: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64, stall_timeout: Duration) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            stall_timeout,
            stall: None,
            waiting: false,
        }
    }

    /// An upstream's response body: no size limit, only the bound on each pause.
    pub fn paced(inner: Incoming, pause: Duration) -> Self {
        Self::new(inner, u64::MAX, pause)
    }

    /// Starts the pause clock if it is not running, and says whether it has run out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.stall_timeout;
        let stall = match &mut self.stall {
            Some(stall) => {
                if !self.waiting {
                    stall.as_mut().reset(deadline);
                }
                stall
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        stall.as_mut().poll(cx).is_ready()
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if this.stalled(cx) {
                    let timeout_ms = this.stall_timeout.as_millis();
                    return Poll::Ready(Some(Err(BodyError::Stalled { timeout_ms })));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.limit {
                        let limit = this.limit;
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Peer(e)))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
