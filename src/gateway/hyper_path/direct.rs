//! The hyper path's body-less requests (every HTTP/2 `GET` and `HEAD`, an HTTP/1.1 one over
//! TLS with ALPN `h2` or handed over from the fast lane) sent and answered with the fast
//! lane's wire code, over a connection from the origin's pool: the request head written
//! straight from the client's header map and the [`Rewrite`], the response head parsed
//! into the map hyper's server writes out, the body read off the connection here.
//!
//! Why: hyper's HTTP/1.1 client connection, set up for each request over a pooled stream
//! (its handshake, buffers, dispatch channel, header map encoding and parsing), was about a
//! third of an HTTP/2 request's instructions (`benches/callgrind_proxy.sh`, row
//! `h2-tls-get`). A request with a body, and a WebSocket handshake, still go through hyper's
//! client ([`super::pooled`]), which streams the body up and hands the upgrade over.
//!
//! The rules are the fast lane's, so the two paths send and accept the same: the
//! upstream's head is held to [`framing::check`](crate::gateway::framing::check) and its
//! headers to [`response_drops`](crate::gateway::headers::response_drops) (with
//! `Reframed`: hyper's server frames the body anew), and a body that breaks off, frames
//! wrongly or pauses longer than the route's `timeout` fails the response (the client's
//! stream is reset). The connection goes back to its pool when the body has been read to
//! its end with nothing after it: at once when it came whole with the head.

use crate::body::limited::PauseClock;
use crate::body::{Body, BodyError, RelayedBody};
use crate::gateway::fast::wire::{self, ChunkScanner, Framing, ResponseHead};
use crate::gateway::fast::{encode_upstream_head, exchange_heads, make_room};
use crate::gateway::pipeline::{AttemptError, Rewrite, Upstream};
use crate::gateway::upstream::idle::UpstreamConn;
use crate::gateway::upstream::Target;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Response};
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A body-less request on its way, encoded afresh for each target tried.
pub(super) struct Direct<'a> {
    pub method: &'a Method,
    /// The client's path and query, which each target's is made from.
    pub original: &'a PathAndQuery,
    /// The normalised (maybe stripped) path the upstream gets.
    pub path: &'a str,
    /// The client's headers, as they came.
    pub headers: &'a HeaderMap,
    /// What the upstream gets of them.
    pub rewrite: &'a Rewrite<'a>,
    /// The longest pause allowed in the response body (the route's `timeout`).
    pub pause: Duration,
    /// The encoded request head.
    pub out: Vec<u8>,
}

impl Upstream for Direct<'_> {
    type Response = Response<Body>;

    fn bodyless(&self) -> bool {
        true
    }

    async fn attempt(&mut self, target: &Target) -> Result<Response<Body>, AttemptError> {
        self.out.clear();
        let request = (self.method, self.original, self.path);
        encode_upstream_head(target, request, self.headers, self.rewrite, &mut self.out);
        let head_request = *self.method == Method::HEAD;
        let idempotent = self.method.is_idempotent();
        let (up, (head, headers)) = exchange_heads(target, &self.out, idempotent, |buf| {
            wire::parse_response_map(buf, head_request)
        })
        .await?;
        let mut response = Response::new(body(up, &head, self.pause));
        *response.status_mut() = head.status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The response body after `head`, read from `up` (whose buffer holds what came after the
/// head): bytes in hand when it came whole (the connection is parked at once), else a
/// [`Relayed`] body.
fn body(mut up: UpstreamConn, head: &ResponseHead, pause: Duration) -> Body {
    let reading = match head.framing {
        Framing::Empty => {
            finish(up, head.reusable);
            return Body::empty();
        }
        Framing::Length(n) if n <= up.buf.len() as u64 => {
            // `n` fits in the buffer, so in a usize.
            let bytes = up.buf.split_to(n as usize).freeze();
            finish(up, head.reusable);
            return Body::Full(Some(bytes));
        }
        Framing::Length(n) => Reading::Length(n),
        Framing::Chunked => Reading::Chunked(ChunkScanner::keeping_trailers(), VecDeque::new()),
        Framing::UntilClose => Reading::UntilClose,
    };
    Body::Relayed(RelayedBody(Box::pin(Relayed {
        up: Some(up),
        reading,
        reusable: head.reusable,
        pause,
        clock: PauseClock::default(),
        yielded: false,
        held: None,
    })))
}

/// A connection whose response has been read to its end goes back to its pool if it may
/// carry another request; bytes past the response mean the upstream is out of step.
fn finish(up: UpstreamConn, reusable: bool) {
    if reusable && up.buf.is_empty() {
        up.park();
    }
}

/// An upstream's response body still on its connection.
struct Relayed {
    /// `None` once the body is over (the connection parked or closed).
    up: Option<UpstreamConn>,
    reading: Reading,
    reusable: bool,
    pause: Duration,
    clock: PauseClock,
    /// The body has yielded to the runtime once (see [`Relayed::fail`]).
    yielded: bool,
    /// A failure waiting for that turn.
    held: Option<BodyError>,
}

/// What is left of the body, by its framing.
enum Reading {
    /// This many bytes.
    Length(u64),
    /// Chunks up to the last one and the trailers; data found and not yet passed on.
    Chunked(ChunkScanner, VecDeque<Bytes>),
    /// Everything until the upstream closes.
    UntilClose,
}

impl Relayed {
    /// The next frame from the bytes in hand, or `None` when more must be read.
    fn next_frame(&mut self) -> Option<Result<Option<Frame<Bytes>>, BodyError>> {
        let up = self.up.as_mut()?;
        match &mut self.reading {
            Reading::Length(0) => Some(Ok(self.end())),
            Reading::Length(left) => {
                if up.buf.is_empty() {
                    return None;
                }
                let take = up
                    .buf
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= take as u64;
                let data = up.buf.split_to(take).freeze();
                if *left == 0 {
                    // Parked now: the frame is the body's last.
                    self.end();
                }
                Some(Ok(Some(Frame::data(data))))
            }
            Reading::Chunked(scanner, found) => loop {
                if let Some(data) = found.pop_front() {
                    return Some(Ok(Some(Frame::data(data))));
                }
                if scanner.is_done() {
                    let trailers = scanner.take_trailers();
                    let _ = self.end();
                    return Some(Ok(trailers.map(Frame::trailers)));
                }
                if up.buf.is_empty() {
                    return None;
                }
                let mut runs = Vec::new();
                let taken = match scanner.advance_with(&up.buf, |run| runs.push(run)) {
                    Ok(taken) => taken,
                    Err(e) => return Some(Err(BodyError::Cut(e.0))),
                };
                let bytes = up.buf.split_to(taken).freeze();
                found.extend(
                    runs.into_iter()
                        .filter(|run| !run.is_empty())
                        .map(|run| bytes.slice(run)),
                );
            },
            Reading::UntilClose => {
                if up.buf.is_empty() {
                    return None;
                }
                Some(Ok(Some(Frame::data(up.buf.split().freeze()))))
            }
        }
    }

    /// The body is over: its connection back to the pool (or closed); no frame.
    fn end(&mut self) -> Option<Frame<Bytes>> {
        if let Some(up) = self.up.take() {
            let reusable = self.reusable && !matches!(self.reading, Reading::UntilClose);
            finish(up, reusable);
        }
        None
    }

    /// A failure closes the connection. One that comes before the body ever waited is
    /// passed on after one turn of the runtime, so that an HTTP/2 client gets the response
    /// head before the stream's reset (h2 drops a stream's unsent frames when it is reset).
    fn fail(
        &mut self,
        e: BodyError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.up = None;
        if self.yielded {
            return Poll::Ready(Some(Err(e)));
        }
        self.yielded = true;
        self.held = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl http_body::Body for Relayed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(e) = this.held.take() {
            return Poll::Ready(Some(Err(e)));
        }
        loop {
            match this.next_frame() {
                Some(Ok(frame)) => return Poll::Ready(frame.map(Ok)),
                Some(Err(e)) => return this.fail(e, cx),
                None => {}
            }
            let Some(up) = this.up.as_mut() else {
                return Poll::Ready(None);
            };
            make_room(&mut up.buf);
            match tokio_util::io::poll_read_buf(Pin::new(&mut up.stream), cx, &mut up.buf) {
                Poll::Ready(Ok(0)) if matches!(this.reading, Reading::UntilClose) => {
                    this.up = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail(BodyError::Cut("the upstream closed the connection"), cx)
                }
                Poll::Ready(Ok(_)) => this.clock.progressed(),
                Poll::Ready(Err(_)) => {
                    return this.fail(BodyError::Cut("reading from the upstream failed"), cx)
                }
                Poll::Pending => {
                    this.yielded = true;
                    if this.clock.stalled(this.pause, cx) {
                        let timeout_ms = this.pause.as_millis();
                        return this.fail(BodyError::Stalled { timeout_ms }, cx);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.up.is_none() && self.held.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.reading, &self.up) {
            (Reading::Length(left), Some(_)) => SizeHint::with_exact(*left),
            (_, None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
