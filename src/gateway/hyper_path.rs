//! The hyper engine: every request the fast lane does not take (TLS, HTTP/2, a body, an
//! upgrade, anything unusual), served through the gateway's phases ([`super::pipeline`]).
//! It reaches a target (`http://` or `https://`) over a connection from the origin's pool,
//! the fast lane's too ([`super::upstream::idle`]): a body-less request with the fast
//! lane's wire code ([`direct`]: its head written from the header map, the answer's head
//! parsed into one, the body read off the connection), a request with a body or a
//! WebSocket handshake with hyper's HTTP/1.1 client connection run in the request's own
//! task ([`pooled`]).
//!
//! Its own part: a request body held to the route's size and pause limits, the attempts
//! (`Pooled`, `direct::Direct`), hyper's framing of the answer
//! ([`BodyFraming::Reframed`](super::headers::BodyFraming)) and the WebSocket splice.

mod direct;
mod pooled;

use super::error::{GatewayError, UpstreamCause};
use super::pipeline::{AttemptError, Exchange, Upstream};
use super::upstream::Target;
use super::{authority, headers, Gateway, Route, Routed};
use crate::access_log::Notes;
use crate::body::limited::LimitedBody;
use crate::body::{Body, BodyError};
use crate::server::ConnInfo;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pooled::{Forwarded, SendError};
use std::borrow::Cow;
use std::time::Duration;

/// Serves one request (its `X-Request-Id`, and when its head was taken) end to end; never
/// fails (errors become responses in [`Exchange::fail`]). What it learns on the way (route,
/// identity, upstream) goes into `notes`.
pub async fn handle(
    gateway: &Gateway,
    req: Request<Incoming>,
    conn: &ConnInfo,
    (request_id, started): (&HeaderValue, std::time::Instant),
    notes: &mut Notes,
) -> Response<Body> {
    let mut exchange = gateway.begin(started);
    let authority = authority::of_request(&req);
    let response = match exchange.route(req.uri().path(), authority) {
        Ok(routed) => {
            let served = serve(gateway, &mut exchange, &routed, req, (conn, request_id)).await;
            served.unwrap_or_else(|e| exchange.fail(e))
        }
        Err(e) => exchange.fail(e),
    };
    *notes = exchange.finish(response.status());
    response
}

/// Authenticate, prepare, forward; then hyper's part of the response filter.
async fn serve(
    gateway: &Gateway,
    exchange: &mut Exchange<'_>,
    routed: &Routed<'_>,
    mut req: Request<Incoming>,
    (conn, request_id): (&ConnInfo, &HeaderValue),
) -> Result<Response<Body>, GatewayError> {
    let route = routed.route();
    let target = super::guard::Target {
        method: req.method(),
        scheme: conn.proto,
        authority: routed.authority(),
        path: req.uri().path(),
    };
    exchange.authenticate(route, req.headers(), target).await?;
    // `is_upgrade_request` takes only a WebSocket handshake: the one switch an upstream
    // may answer with (checked in `Pooled::attempt`).
    let websocket = headers::is_upgrade_request(req.method(), req.version(), req.headers());
    let pause = route.config.timeout;
    if !websocket && http_body::Body::is_end_stream(req.body()) {
        if let Some(original) = req.uri().path_and_query() {
            let rewrite = exchange.prepare(routed, (conn, request_id), false);
            let mut direct = direct::Direct {
                method: req.method(),
                original,
                path: routed.path(),
                headers: req.headers(),
                rewrite: &rewrite,
                pause,
                // Room for a typical head at once, not by growth.
                out: Vec::with_capacity(super::fast::HEAD_BUFFER),
            };
            return exchange.forward(route, &mut direct).await;
        }
    }
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    exchange
        .prepare(routed, (conn, request_id), websocket)
        .apply(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = limit_body(route, body, gateway.body_timeout())?;
    let mut pooled = Pooled {
        bodyless: http_body::Body::is_end_stream(&body),
        original: parts.uri.path_and_query().cloned(),
        parts: Some(parts),
        body: Some(body),
        path: routed.path(),
        websocket,
    };
    let (mut response, driver) = exchange.forward(route, &mut pooled).await?;
    // `Pooled::attempt` let a 101 through only in answer to a WebSocket upgrade.
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    headers::prepare_response(response.headers_mut(), switching);
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (hold, closing) = (conn.hold.clone(), conn.closing.clone());
        tokio::spawn(async move {
            // Counted as the open connection it still is until the splice ends.
            let _hold = hold;
            splice_upgraded(client_upgrade, upstream_upgrade, closing).await;
        });
    }
    Ok(response.map(|body| Body::Limited(LimitedBody::paced(body, pause).driven_by(driver))))
}

/// Refuses a body declared larger than the route allows before any upstream sees it,
/// and holds the rest to the route's size limit and to `pause`, the longest pause allowed
/// in it, as it streams.
fn limit_body(route: &Route, body: Incoming, pause: Duration) -> Result<Body, GatewayError> {
    let limit = route.config.max_request_body;
    if http_body::Body::size_hint(&body).lower() > limit {
        return Err(GatewayError::RequestBodyTooLarge { limit });
    }
    Ok(Body::Limited(LimitedBody::new(body, limit, pause)))
}

/// A prepared request on its way to a target, over a connection from the origin's shared
/// pool ([`pooled`]).
struct Pooled<'a> {
    /// The request's head, its URI still the client's; the attempt that sends it takes it
    /// (one that cannot connect leaves it for the next).
    parts: Option<http::request::Parts>,
    /// The client's path and query, which each target's URI is made from.
    original: Option<PathAndQuery>,
    /// Taken with `parts`.
    body: Option<Body>,
    bodyless: bool,
    /// The normalised (maybe stripped) path the upstream gets.
    path: &'a str,
    /// The request asks for a WebSocket upgrade.
    websocket: bool,
}

impl Upstream for Pooled<'_> {
    type Response = Forwarded;

    fn bodyless(&self) -> bool {
        self.bodyless
    }

    async fn attempt(&mut self, target: &Target) -> Result<Forwarded, AttemptError> {
        // A connection first: one that cannot be made leaves the request for another target.
        let mut reused = target.idle.take();
        loop {
            let fresh = reused.is_none();
            let up = match reused.take() {
                Some(up) => up,
                None => target
                    .connect()
                    .await
                    .map_err(|e| AttemptError::Connect(e.into()))?,
            };
            let req = match self.request(target) {
                Ok(req) => req,
                Err(e) => {
                    up.park();
                    return Err(e);
                }
            };
            match pooled::send(up, req, self.websocket).await {
                Ok(forwarded) => return Ok(forwarded),
                // The pooled connection had been closed by the upstream: once more, afresh.
                Err(SendError::Unsent(req, _)) if !fresh => self.put_back(*req),
                Err(SendError::Unsent(_, e) | SendError::Failed(e)) => {
                    return Err(send_error(e.into()))
                }
                Err(SendError::Refused(fault)) => return Err(AttemptError::Refused(fault)),
            }
        }
    }
}

impl Pooled<'_> {
    /// The request for `target`: origin-form, with the target's `Host`.
    fn request(&mut self, target: &Target) -> Result<Request<Body>, AttemptError> {
        // Every attempt after one that took the head follows a connect failure, which left it.
        let mut parts = self
            .parts
            .take()
            .ok_or(AttemptError::Failed(UpstreamCause::Protocol(
                "the request was sent already",
            )))?;
        parts.uri = upstream_uri(target, self.original.as_ref(), self.path)
            .map_err(AttemptError::Request)?;
        parts
            .headers
            .insert(header::HOST, target.host_value().clone());
        let body = self.body.take().unwrap_or_else(Body::empty);
        Ok(Request::from_parts(parts, body))
    }

    /// A request that was not sent, back for the next try.
    fn put_back(&mut self, req: Request<Body>) {
        let (parts, body) = req.into_parts();
        self.parts = Some(parts);
        self.body = Some(body);
    }
}

/// Why sending to an upstream failed: the client's body first (too large, stalled, cut
/// off: the upstream request was aborted, and it is the client's doing), then the upstream.
fn send_error(source: UpstreamCause) -> AttemptError {
    let client_fault = match BodyError::find(&source) {
        Some(BodyError::TooLarge { limit }) => GatewayError::RequestBodyTooLarge { limit: *limit },
        Some(BodyError::Stalled { timeout_ms }) => GatewayError::RequestBodyTimeout {
            timeout_ms: *timeout_ms,
        },
        Some(BodyError::Peer(_)) => GatewayError::RequestBodyBroken { source },
        // Only a response body is cut off by an upstream.
        Some(BodyError::Cut(_)) | None => return AttemptError::Failed(source),
    };
    AttemptError::Request(client_fault)
}

/// The upstream URI (origin-form): the request's own path-and-query when nothing changed,
/// else rebuilt.
fn upstream_uri(
    target: &Target,
    original: Option<&PathAndQuery>,
    path: &str,
) -> Result<http::Uri, GatewayError> {
    let pq = match original {
        // The same rule as the fast lane's: reuse the original when routing changed nothing.
        Some(pq) => match target.path_and_query(pq, path) {
            Cow::Borrowed(_) => Ok(pq.clone()),
            Cow::Owned(rebuilt) => PathAndQuery::try_from(rebuilt),
        },
        None => PathAndQuery::try_from(
            target
                .path_and_query(&PathAndQuery::from_static("/"), path)
                .into_owned(),
        ),
    };
    pq.map(http::Uri::from)
        .map_err(|e| GatewayError::BadUpstreamRequest(e.into()))
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        _ = closing.wait_for(|closing| *closing) => {
            tracing::debug!("drain deadline passed: closing an upgraded connection");
        }
    }
}
