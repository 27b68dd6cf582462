//! The HTTP/1.1 fast lane: body-less GET and HEAD requests on plain-TCP connections, proxied
//! to plain-HTTP upstreams by the connection's own task, over upstream connections that the
//! client connection owns.
//!
//! Why it exists: through hyper's server and pooled client, a proxied request crossed tasks
//! and channels four times and cost ~1.4x nginx's CPU per request in the shared harness;
//! a loop that reads a head, writes it upstream and relays the answer does what nginx does.
//! Why it is safe: it takes only requests that [`wire::parse_request`] accepts (no body, no
//! upgrade, HTTP/1.1, origin-form) and routes whose targets are all `http://`; everything
//! else, including a head that has not fully arrived, is handed to hyper with the bytes
//! already read, so hyper stays the only parser of anything unusual. Routing, the guard,
//! header rewriting, error bodies and metrics are the gateway's own functions, shared with
//! the hyper path.
//!
//! Here: the connection loop and one request's way to a response head. [`wire`] parses and
//! encodes heads, `upstreams` keeps the client's upstream connections, `relay` moves bodies.

mod relay;
mod upstreams;
pub mod wire;

use super::framing::FramingError;
use super::headers::{self, ForwardedFor};
use super::upstream::Target;
use super::{ConnInfo, Gateway, Route};
use crate::access_log::{Entry, Notes};
use crate::body::Body;
use crate::error::{BoxError, GatewayError};
use crate::metrics::GuardOutcome;
use crate::server::SharedLimits;
use crate::verify::Principal;
use bytes::{Buf, Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use upstreams::{IdleSet, UpstreamConn};
use wire::{ParsedRequest, ParsedResponse, RequestHead, ResponseHead};

/// Read buffer size for either side; a request head that does not fit goes to hyper.
const BUFFER: usize = 8 * 1024;

/// How a connection left the fast lane.
pub enum Exit {
    /// The connection is finished: the client left, shutdown began while it was idle, a
    /// response ended it, or I/O failed.
    Closed,
    /// hyper serves the rest: `read` holds bytes read from the client and not yet
    /// answered, the start of a request head that has been due since `head_since`.
    HandOff { read: Bytes, head_since: Instant },
}

/// What serving one request left the connection fit for.
enum Next {
    KeepAlive,
    Close,
    /// Not for the fast lane after all (decided before any effect).
    Decline,
}

/// A client connection on the fast lane.
struct Lane<'c> {
    client: &'c mut TcpStream,
    conn: &'c ConnInfo,
    /// Bytes from the client not yet consumed.
    buf: BytesMut,
    /// Encoding buffer for request heads and our own responses.
    out: Vec<u8>,
    /// The client's version of the upstream's response head (then its first body bytes).
    response: Vec<u8>,
    idle: IdleSet,
    /// Body bytes of the current response written to the client so far.
    sent: u64,
}

/// Serves requests from `client`, accepted at `started`, while they suit the fast lane.
/// `gateway_for` says whether a raw path belongs to the gateway (and not to the
/// authorization server), and gives the gateway of the configuration current when the
/// request arrived (a reload may swap it between two requests). A connection that sends no byte of its first head within
/// `request_head_timeout`, or of a later one within `keepalive_timeout` of the previous
/// response, is closed, as on hyper's path; a head that arrives in pieces goes to hyper,
/// which gives it the rest of its `request_head_timeout`.
pub async fn serve(
    client: &mut TcpStream,
    gateway_for: impl Fn(&str) -> Option<Arc<Gateway>>,
    conn: &ConnInfo,
    shutdown: &mut watch::Receiver<bool>,
    limits: &SharedLimits,
    started: Instant,
) -> Exit {
    let mut lane = Lane {
        client,
        conn,
        buf: BytesMut::with_capacity(BUFFER),
        out: Vec::with_capacity(1024),
        response: Vec::with_capacity(1024),
        idle: IdleSet::default(),
        sent: 0,
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
            make_room(&mut lane.buf);
            tokio::select! {
                read = lane.client.read_buf(&mut lane.buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return Exit::Closed;
                    }
                }
                // An idle connection has nothing to drain.
                _ = &mut stop => return Exit::Closed,
                _ = &mut idle_timer => {
                    if idle_since.elapsed() >= idle_limit {
                        return Exit::Closed;
                    }
                    idle_timer.as_mut().reset((idle_since + idle_limit).into());
                }
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
        match gateway.serve_fast(head, &mut lane).await {
            Next::KeepAlive => {}
            Next::Close => return Exit::Closed,
            Next::Decline => return hand_off(data),
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

impl Gateway {
    /// One request end to end, like [`Gateway::handle`] on the hyper path.
    async fn serve_fast(&self, head: RequestHead, lane: &mut Lane<'_>) -> Next {
        let started = Instant::now();
        let head_request = head.method == Method::HEAD;
        let request_id = headers::request_id(&head.headers);
        // A declined request is logged by hyper instead.
        let entry = self.begin_entry(&head, lane.conn, &request_id);
        let mut notes = Notes::default();
        let routed = match self.route_origin_form(head.target.path(), &head.headers) {
            Ok(r) => r,
            Err(e) => {
                let status = e.status();
                self.no_route_metrics.finish(status, started);
                notes.route = Some(self.no_route_name.clone());
                let next = lane.respond_error(e, head_request, &request_id).await;
                self.log_fast(entry, notes, status, lane.sent, started);
                return next;
            }
        };
        let route = routed.route;
        if !route.fast_lane {
            return Next::Decline;
        }
        notes.route = Some(route.name.clone());
        let metrics = &route.metrics;
        let target = super::guard::Target {
            method: &head.method,
            scheme: lane.conn.proto,
            authority: routed.authority.as_ref(),
            path: head.target.path(),
        };
        let result = match self.authenticate(route, &head.headers, target).await {
            Ok(principal) => {
                if principal.is_some() {
                    metrics.guard(GuardOutcome::Allowed);
                }
                notes.principal = principal.clone();
                let authority = routed.authority;
                let request = (head, &request_id);
                lane.forward(
                    route,
                    &routed.path,
                    authority,
                    request,
                    principal.as_deref(),
                    &mut notes,
                )
                .await
            }
            Err(e) => Err(e),
        };
        // As on the hyper path, a request is counted when its response head is ready; the
        // body streams after.
        let (next, status) = match result {
            Ok((upstream, response)) => {
                let status = response.status;
                metrics.finish(status, started);
                (
                    lane.relay(upstream, response, route.config.timeout).await,
                    status,
                )
            }
            Err(e) => {
                if let Some(outcome) = e.guard_outcome() {
                    metrics.guard(outcome);
                }
                let status = e.status();
                metrics.finish(status, started);
                (
                    lane.respond_error(e, head_request, &request_id).await,
                    status,
                )
            }
        };
        self.log_fast(entry, notes, status, lane.sent, started);
        next
    }

    /// The access-log entry of a request, when the log is on.
    fn begin_entry(
        &self,
        head: &RequestHead,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) -> Option<Entry> {
        self.log.enabled().then(|| {
            let client_addr = self.client_addr(conn.peer, &head.headers);
            let path = head.target.path();
            let (method, headers) = (&head.method, &head.headers);
            Entry::begin(
                method,
                Version::HTTP_11,
                path,
                headers,
                client_addr,
                request_id,
            )
        })
    }

    /// Hands a finished fast-lane request to the access log.
    fn log_fast(
        &self,
        entry: Option<Entry>,
        notes: Notes,
        status: StatusCode,
        sent: u64,
        started: Instant,
    ) {
        if let Some(mut entry) = entry {
            entry.note(notes);
            entry.finish(status, sent, started);
            self.log.record(entry);
        }
    }
}

/// A rewritten request, ready to be encoded for whichever target is tried.
struct Outgoing<'r> {
    method: &'r Method,
    /// The request's `X-Request-Id`, also set on the client's response.
    request_id: &'r HeaderValue,
    original: &'r PathAndQuery,
    /// The normalised (maybe stripped) path the upstream gets.
    path: &'r str,
    headers: &'r HeaderMap,
}

/// Why one attempt at a target failed.
enum AttemptError {
    Connect(std::io::Error),
    Failed(BoxError),
    Refused(FramingError),
}

impl<'c> Lane<'c> {
    /// Answers with the gateway's error response; the connection stays usable.
    async fn respond_error(
        &mut self,
        e: GatewayError,
        head_request: bool,
        request_id: &HeaderValue,
    ) -> Next {
        let mut response = e.into_response().map(|body| match body {
            Body::Full(bytes) => bytes.unwrap_or_default(),
            Body::Stream(_) | Body::Limited(_) | Body::Logged(_) => Bytes::new(),
        });
        response
            .headers_mut()
            .insert(headers::X_REQUEST_ID, request_id.clone());
        self.sent = if head_request {
            0
        } else {
            response.body().len() as u64
        };
        self.out.clear();
        wire::encode_response(&response, head_request, &mut self.out);
        match self.client.write_all(&self.out).await {
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Close,
        }
    }

    /// Rewrites the request and sends it to a target (another one if the first refuses a
    /// connection); returns the connection with the response head read.
    async fn forward(
        &mut self,
        route: &Route,
        path: &str,
        authority: Option<HeaderValue>,
        (head, request_id): (RequestHead, &HeaderValue),
        principal: Option<&Principal>,
        notes: &mut Notes,
    ) -> Result<(UpstreamConn, ResponseHead), GatewayError> {
        let RequestHead {
            method,
            target: original,
            mut headers,
            ..
        } = head;
        let forwarded = ForwardedFor {
            client_ip: &self.conn.client_ip,
            proto: self.conn.proto,
            host: authority,
            request_id,
        };
        headers::prepare_request(
            &mut headers,
            forwarded,
            principal.map(|p| &p.headers),
            false,
        );
        let request = Outgoing {
            method: &method,
            request_id,
            original: &original,
            path,
            headers: &headers,
        };
        let attempts = if route.pool.len() > 1 { 2 } else { 1 };
        let mut attempt = 1;
        loop {
            let target = route.pool.pick().ok_or(GatewayError::NoRoute)?;
            match self.attempt(route, target, &request, notes).await {
                Err(GatewayError::UpstreamConnect { .. }) if attempt < attempts => attempt += 1,
                result => return result,
            }
        }
    }

    /// One try at one target, bounded by the route's timeout.
    async fn attempt(
        &mut self,
        route: &Route,
        target: &Target,
        request: &Outgoing<'_>,
        notes: &mut Notes,
    ) -> Result<(UpstreamConn, ResponseHead), GatewayError> {
        self.out.clear();
        wire::encode_request(
            request.method,
            &target.path_and_query(request.original, request.path),
            target.host_header(),
            request.headers,
            &mut self.out,
        );
        let head_request = *request.method == Method::HEAD;
        let started = Instant::now();
        let result = tokio::time::timeout(
            route.config.timeout,
            self.exchange_heads(target, head_request, request.request_id),
        )
        .await;
        let took = started.elapsed();
        route.metrics.observe_upstream(took.as_secs_f64());
        notes.upstream = Some(target.label.clone());
        notes.upstream_time = Some(took);
        match result {
            Ok(Ok(pair)) => Ok(pair),
            Err(_elapsed) => Err(GatewayError::UpstreamTimeout {
                route: route.config.name.clone(),
                upstream: target.label.to_string(),
                timeout_ms: route.config.timeout.as_millis(),
            }),
            Ok(Err(AttemptError::Connect(e))) => {
                target.mark_down();
                Err(GatewayError::UpstreamConnect {
                    route: route.config.name.clone(),
                    upstream: target.label.to_string(),
                    source: e.into(),
                })
            }
            Ok(Err(AttemptError::Failed(source))) => Err(GatewayError::UpstreamFailed {
                route: route.config.name.clone(),
                upstream: target.label.to_string(),
                source,
            }),
            Ok(Err(AttemptError::Refused(source))) => Err(GatewayError::UpstreamFraming {
                route: route.config.name.clone(),
                upstream: target.label.to_string(),
                source,
            }),
        }
    }

    /// Sends the encoded request (in `out`) and reads the response head; on return
    /// `response` holds the client's version of that head. An idle connection is reused
    /// only if nothing arrived on it while idle; one that turns out closed anyway is
    /// replaced by a fresh one once (the fast lane's requests are idempotent).
    async fn exchange_heads(
        &mut self,
        target: &Target,
        head_request: bool,
        request_id: &HeaderValue,
    ) -> Result<(UpstreamConn, ResponseHead), AttemptError> {
        let set = [(&headers::X_REQUEST_ID, request_id)];
        let mut reused = self.idle.take(target.id);
        loop {
            let fresh = reused.is_none();
            self.response.clear();
            let mut up = match reused.take() {
                Some(up) => up,
                None => UpstreamConn::connect(target)
                    .await
                    .map_err(AttemptError::Connect)?,
            };
            if let Err(e) = up.stream.write_all(&self.out).await {
                if fresh {
                    return Err(AttemptError::Failed(e.into()));
                }
                continue;
            }
            let mut received = false;
            loop {
                self.response.clear();
                match wire::parse_response_with(&up.buf, head_request, &set, &mut self.response) {
                    ParsedResponse::Complete(head) => {
                        up.buf.advance(head.len);
                        return Ok((up, head));
                    }
                    ParsedResponse::Interim(len) => {
                        up.buf.advance(len);
                        continue;
                    }
                    // The connection is dropped with the error: never reused.
                    ParsedResponse::Invalid(why) => return Err(AttemptError::Failed(why.into())),
                    ParsedResponse::Refused(fault) => return Err(AttemptError::Refused(fault)),
                    ParsedResponse::Partial => {}
                }
                make_room(&mut up.buf);
                match up.stream.read_buf(&mut up.buf).await {
                    Ok(n) if n > 0 => received = true,
                    Ok(_) | Err(_) if !fresh && !received => break,
                    Ok(_) => {
                        return Err(AttemptError::Failed(
                            "upstream closed the connection before responding".into(),
                        ))
                    }
                    Err(e) => return Err(AttemptError::Failed(e.into())),
                }
            }
            // The reused connection had been closed by the upstream: once more, afresh.
        }
    }
}

/// Space for the next read: an emptied buffer is reused from its start, a full one grows.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUFFER);
    }
}
