//! The HTTP/1.1 fast lane: body-less GET and HEAD requests on HTTP/1.1 connections (plain
//! TCP, or TLS when ALPN chose `http/1.1` or nothing), proxied by the connection's own task
//! over keep-alive upstream connections (plain or TLS) from the origin's pool (shared with
//! the hyper path).
//!
//! Why it exists: through hyper's server and pooled client, a proxied request crossed tasks
//! and channels four times and cost ~1.4x nginx's CPU per request in the shared harness;
//! a loop that reads a head, writes it upstream and relays the answer does what nginx does.
//! Why it is safe: it takes only requests that [`wire::parse_request`] accepts (no body, no
//! upgrade, HTTP/1.1, origin-form); everything else, including a head that has not fully
//! arrived, is handed to hyper with the bytes already read, so hyper stays the only parser
//! of anything unusual. Every phase of the
//! gateway (routing, the guard, the rewrite, the retry and timeout policy, error
//! classification and bodies, metrics, the access log) is [`super::pipeline`]'s, shared
//! with the hyper path; the response's hop-by-hop and framing rules are
//! [`super::headers::response_drops`] and [`super::framing::check`], applied by [`wire`].
//!
//! Here: the connection loop, and one request's way through the pipeline with this lane's
//! [`Upstream`] (the targets' pooled upstream connections); [`encode_upstream_head`] and
//! [`exchange_heads`] are also how the hyper path sends its body-less requests
//! (`hyper_path::direct`). [`wire`] parses and encodes
//! heads, [`super::upstream::idle`] keeps the origins' idle upstream connections (shared
//! with the hyper path), `relay` moves bodies,
//! [`ClientIo`] is what the lane needs of a client stream.
//!
//! An idle keep-alive connection costs little: between requests the lane holds no buffer
//! (it waits for readability, then reads into a fresh one), each request's own state lives
//! in a box freed when it is answered, and no upstream connection is held for it.

mod relay;
pub mod wire;

use super::error::{GatewayError, UpstreamCause};
use super::headers::RawHeaders;
use super::pipeline::{AttemptError, Exchange, Rewrite, Upstream};
use super::upstream::idle::UpstreamConn;
use super::upstream::Target;
use super::{authority, headers, Gateway, Routed};
use crate::body::Body;
use crate::server::{ClientIo, ConnInfo, Exit, SharedLimits};
use bytes::{Buf, Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Response, Version};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use wire::{ParsedRequest, ParsedResponse, RequestHead, ResponseHead};

/// Read buffer size for either side; a request head that does not fit goes to hyper.
const BUFFER: usize = 8 * 1024;
/// First size of the encoding buffers (a request head, a response head): most heads fit.
pub(super) const HEAD_BUFFER: usize = 1024;
/// How long a closing connection may take to send its TLS `close_notify`.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// What serving one request left the connection fit for.
enum Next {
    KeepAlive,
    Close,
}

/// A client connection on the fast lane. Its buffers are empty, and hold no memory, while
/// the connection waits for a request.
struct Lane<'c> {
    client: &'c mut dyn ClientIo,
    conn: &'c ConnInfo,
    /// Bytes from the client not yet consumed.
    buf: BytesMut,
    /// Encoding buffer for request heads and our own responses.
    out: Vec<u8>,
    /// The client's version of the upstream's response head (then its first body bytes).
    response: Vec<u8>,
    /// Body bytes of the current response written to the client so far.
    sent: u64,
    /// The connection is to end in a reset ([`ClientIo::reset_on_close`]).
    reset: bool,
}

/// Serves requests from `client`, accepted at `started`, while they suit the fast lane.
/// `gateway_for` says whether a raw path belongs to the gateway (and not to the
/// authorization server), and gives the gateway of the configuration current when the
/// request arrived (a reload may swap it between two requests). A connection that sends no byte of its first head within
/// `request_head_timeout`, or of a later one within `keepalive_timeout` of the previous
/// response, is closed, as on hyper's path; a head that arrives in pieces goes to hyper,
/// which gives it the rest of its `request_head_timeout`.
pub async fn serve(
    client: &mut dyn ClientIo,
    gateway_for: impl Fn(&str) -> Option<Arc<Gateway>>,
    conn: &ConnInfo,
    shutdown: &mut watch::Receiver<bool>,
    limits: &SharedLimits,
    started: Instant,
) -> Exit {
    let mut lane = Lane {
        client,
        conn,
        buf: BytesMut::new(),
        out: Vec::new(),
        response: Vec::new(),
        sent: 0,
        reset: false,
    };
    // Both live as long as the connection, so that a request costs no timer or waiter
    // registration: the timer is moved on only when it fires early.
    let stop = shutdown.wait_for(|stop| *stop);
    tokio::pin!(stop);
    let mut idle_since = started;
    let mut idle_limit = limits.get().request_head_timeout;
    let idle_timer = tokio::time::sleep_until((started + idle_limit).into());
    tokio::pin!(idle_timer);
    let mut served_one = false;
    loop {
        while lane.buf.is_empty() {
            lane.release();
            let ending = tokio::select! {
                read = lane.read_when_ready() => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Exit::Closed;
                    }
                    false
                }
                // An idle connection has nothing to drain.
                _ = &mut stop => true,
                _ = &mut idle_timer => {
                    let late = idle_since.elapsed() >= idle_limit;
                    if !late {
                        idle_timer.as_mut().reset((idle_since + idle_limit).into());
                    }
                    late
                }
            };
            if ending {
                return lane.close().await;
            }
        }
        // The first head has been due since the start; a later one since its first byte.
        let head_since = if served_one { Instant::now() } else { started };
        // The head's header values become slices of these bytes, not copies.
        let data = lane.buf.split().freeze();
        let hand_off = |read| Exit::HandOff { read, head_since };
        let head = match wire::parse_request(&data) {
            ParsedRequest::Complete(head) => head,
            ParsedRequest::Partial | ParsedRequest::Decline => return hand_off(data),
        };
        let Some(gateway) = gateway_for(head.target.path()) else {
            return hand_off(data);
        };
        let len = head.len;
        // Boxed: the request's state (its upstream exchange, the relay) is the largest part
        // of this future, and an idle connection's task should not carry room for it.
        match Box::pin(lane.serve_one(&gateway, head)).await {
            Next::KeepAlive => {}
            Next::Close => return lane.close().await,
        }
        // Pipelined requests behind this one (rare) go back into the buffer.
        if data.len() > len {
            lane.buf.extend_from_slice(&data[len..]);
        }
        served_one = true;
        idle_since = Instant::now();
        // A reload's limits apply from the next request.
        idle_limit = limits.get().keepalive_timeout;
        // The timer only moves on when it fires early; a keep-alive limit shorter than the
        // head limit needs it earlier now.
        let due = (idle_since + idle_limit).into();
        if due < idle_timer.deadline() {
            idle_timer.as_mut().reset(due);
        }
    }
}

impl<'c> Lane<'c> {
    /// One request end to end through the gateway's phases, like [`Gateway::handle`] on
    /// the hyper path.
    async fn serve_one(&mut self, gateway: &Gateway, head: RequestHead) -> Next {
        let started = Instant::now();
        let head_request = head.method == Method::HEAD;
        let request_id = headers::request_id(&head.headers);
        // A declined request is logged by hyper instead.
        let request_line = (&head.method, Version::HTTP_11, head.target.path());
        let entry = gateway.begin_entry(request_line, &head.headers, self.conn.peer, &request_id);
        let mut exchange = gateway.begin(started);
        // All the fast lane takes is origin-form HTTP/1.1, whose authority is its Host.
        let authority = authority::request_authority(Version::HTTP_11, None, &head.headers);
        let result = match exchange.route(head.target.path(), authority) {
            Ok(routed) => {
                let pause = routed.route().config.timeout;
                let target = super::guard::Target {
                    method: &head.method,
                    scheme: self.conn.proto,
                    authority: routed.authority(),
                    path: head.target.path(),
                };
                let forwarded = match exchange
                    .authenticate(routed.route(), &head.headers, target)
                    .await
                {
                    Ok(()) => {
                        let request = (head, &request_id);
                        self.forward(&mut exchange, &routed, request).await
                    }
                    Err(e) => Err(e),
                };
                forwarded.map(|answer| (answer, pause))
            }
            Err(e) => Err(e),
        };
        let (next, status, notes) = match result {
            Ok(((upstream, response), pause)) => {
                let status = response.status;
                // As on the hyper path, a request is counted when its response head is
                // ready; the body streams after.
                let notes = exchange.finish(status);
                (self.relay(upstream, response, pause).await, status, notes)
            }
            Err(e) => {
                let response = exchange.fail(e);
                let status = response.status();
                let notes = exchange.finish(status);
                let next = self.respond(response, head_request, &request_id).await;
                (next, status, notes)
            }
        };
        gateway.record(entry, notes, (status, self.sent), started);
        next
    }
}

impl Lane<'_> {
    /// Gives the buffers' memory back while the connection waits for its next request.
    fn release(&mut self) {
        if self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        self.out = Vec::new();
        self.response = Vec::new();
    }

    /// Waits for the client's next bytes without holding a buffer, then reads them into a
    /// fresh one. Cancel-safe: bytes are only taken by the read that completes.
    async fn read_when_ready(&mut self) -> std::io::Result<usize> {
        let client = &mut *self.client;
        std::future::poll_fn(move |cx| client.poll_readable(cx)).await?;
        make_room(&mut self.buf);
        self.client.read_buf(&mut self.buf).await
    }

    /// Ends the connection: a TLS client gets its `close_notify` (bounded), unless the
    /// connection is to end in a reset.
    async fn close(&mut self) -> Exit {
        if !self.reset {
            let _ = tokio::time::timeout(CLOSE_GRACE, self.client.shutdown()).await;
        }
        Exit::Closed
    }
}

/// Writes `bytes` to the client and flushes them (TLS holds records back until a flush).
async fn send(client: &mut dyn ClientIo, bytes: &[u8]) -> std::io::Result<()> {
    client.write_all(bytes).await?;
    client.flush().await
}

/// An emptied encoding buffer with room for a typical head.
fn reuse(buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(HEAD_BUFFER);
}

impl<'c> Lane<'c> {
    /// Writes a response of the gateway's own (an error); the connection stays usable.
    async fn respond(
        &mut self,
        response: Response<Body>,
        head_request: bool,
        request_id: &HeaderValue,
    ) -> Next {
        let mut response = response.map(|body| match body {
            Body::Full(bytes) => bytes.unwrap_or_default(),
            Body::Stream(_) | Body::Limited(_) | Body::Logged(_) | Body::Relayed(_) => Bytes::new(),
        });
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID, request_id.clone());
        self.sent = if head_request {
            0
        } else {
            response.body().len() as u64
        };
        reuse(&mut self.out);
        wire::encode_response(&response, head_request, &mut self.out);
        match send(&mut *self.client, &self.out).await {
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Close,
        }
    }

    /// Prepares the request and forwards it through the pipeline with this lane's
    /// upstream connections; returns the connection with the response head read.
    async fn forward(
        &mut self,
        exchange: &mut Exchange<'_>,
        routed: &Routed<'_>,
        (head, request_id): (RequestHead, &HeaderValue),
    ) -> Result<(UpstreamConn, ResponseHead), GatewayError> {
        let RequestHead {
            method,
            target: original,
            headers,
            ..
        } = head;
        let conn = self.conn;
        let rewrite = exchange.prepare(routed, (conn, request_id), false);
        let mut outgoing = Outgoing {
            lane: self,
            method: &method,
            request_id,
            original: &original,
            path: routed.path(),
            headers: &headers,
            rewrite: &rewrite,
        };
        exchange.forward(routed.route(), &mut outgoing).await
    }
}

/// A prepared request, encoded afresh for each target tried, on the lane's own upstream
/// connections.
struct Outgoing<'l, 'c> {
    lane: &'l mut Lane<'c>,
    method: &'l Method,
    /// The request's `X-Request-Id`, also set on the client's response.
    request_id: &'l HeaderValue,
    original: &'l PathAndQuery,
    /// The normalised (maybe stripped) path the upstream gets.
    path: &'l str,
    /// The client's headers, as they came.
    headers: &'l RawHeaders,
    /// What the upstream gets of them.
    rewrite: &'l Rewrite<'l>,
}

impl Upstream for Outgoing<'_, '_> {
    type Response = (UpstreamConn, ResponseHead);

    fn bodyless(&self) -> bool {
        true
    }

    async fn attempt(
        &mut self,
        target: &Target,
    ) -> Result<(UpstreamConn, ResponseHead), AttemptError> {
        let lane = &mut *self.lane;
        // Released while the connection was idle: room for the head at once, not by growth.
        reuse(&mut lane.out);
        let request = (self.method, self.original, self.path);
        encode_upstream_head(target, request, self.headers, self.rewrite, &mut lane.out);
        let head_request = *self.method == Method::HEAD;
        let set = [(&headers::X_REQUEST_ID, self.request_id)];
        let response = &mut lane.response;
        // The fast lane takes GET and HEAD alone.
        exchange_heads(target, &lane.out, true, |buf| {
            reuse(response);
            let parsed = wire::parse_response_with(buf, head_request, &set, response);
            if let ParsedResponse::Complete(head) = &parsed {
                buf.advance(head.len);
            }
            parsed
        })
        .await
    }
}

/// The head `target` gets for a body-less request (`method`, the client's path and query,
/// the routed path) with the client's `headers` and the gateway's `rewrite` of them: both
/// engines' way to write it.
pub(super) fn encode_upstream_head(
    target: &Target,
    (method, original, path): (&Method, &PathAndQuery, &str),
    headers: &impl headers::HeaderView,
    rewrite: &Rewrite<'_>,
    out: &mut Vec<u8>,
) {
    wire::encode_request_with(
        method,
        &target.path_and_query(original, path),
        target.host_header(),
        |out| rewrite.encode(headers, out),
        out,
    );
}

/// Sends a request head (`head`, encoded) to `target` and reads the response head with
/// `parse`, which takes a complete head off the front of the connection's buffer: the way
/// both engines send a body-less request. An idle connection is reused only if nothing
/// arrived on it while idle; one that turns out closed anyway is replaced by a fresh one
/// once: when writing to it failed, or (an `idempotent` request only, RFC 9110 §9.2.2) when
/// it closed without a byte of answer, which may come after the upstream acted on it.
pub(super) async fn exchange_heads<H>(
    target: &Target,
    head: &[u8],
    idempotent: bool,
    mut parse: impl FnMut(&mut BytesMut) -> ParsedResponse<H>,
) -> Result<(UpstreamConn, H), AttemptError> {
    let mut reused = target.idle.take();
    loop {
        let fresh = reused.is_none();
        let mut up = match reused.take() {
            Some(up) => up,
            None => target
                .connect()
                .await
                .map_err(|e| AttemptError::Connect(e.into()))?,
        };
        if let Err(e) = send_request(&mut up, head).await {
            if fresh {
                return Err(AttemptError::Failed(e.into()));
            }
            continue;
        }
        let mut received = false;
        loop {
            match parse(&mut up.buf) {
                ParsedResponse::Complete(head) => return Ok((up, head)),
                ParsedResponse::Interim(len) => {
                    up.buf.advance(len);
                    continue;
                }
                // The connection is dropped with the error: never reused.
                ParsedResponse::Invalid(why) => {
                    return Err(AttemptError::Failed(UpstreamCause::Protocol(why)))
                }
                ParsedResponse::Refused(fault) => return Err(AttemptError::Refused(fault)),
                ParsedResponse::Partial => {}
            }
            make_room(&mut up.buf);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(n) if n > 0 => received = true,
                Ok(_) | Err(_) if idempotent && !fresh && !received => break,
                Ok(_) => {
                    return Err(AttemptError::Failed(UpstreamCause::Protocol(
                        "upstream closed the connection before responding",
                    )))
                }
                Err(e) => return Err(AttemptError::Failed(e.into())),
            }
        }
        // The reused connection had been closed by the upstream: once more, afresh.
    }
}

/// Writes a request head upstream; a TLS connection holds its records back until the flush.
#[inline]
async fn send_request(up: &mut UpstreamConn, head: &[u8]) -> std::io::Result<()> {
    up.stream.write_all(head).await?;
    up.stream.flush().await
}

/// Space for the next read: a buffer released while idle (or never used) is made at its
/// size at once, an emptied one is reused from its start, a full one grows.
pub(super) fn make_room(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        // Not `reserve`: growing an empty buffer goes through its shared-or-not checks and
        // the vector's growth policy before the same allocation.
        *buf = BytesMut::with_capacity(BUFFER);
    } else if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUFFER);
    }
}
