//! The hyper path's way to a target: hyper's HTTP/1.1 client connection over a (plain or
//! TLS) connection lent from the origin's pool ([`crate::gateway::upstream::idle`], the one the
//! fast lane uses too), written and read in the request's own task: no connection task,
//! no channel hop to one. The connection goes back to the pool when its response has been
//! read: at once when the head arrives with the whole body, else when the body's reader
//! (hyper's server, in the same task) reaches its end, which polls the connection on the
//! way ([`Driver`]).
//!
//! A WebSocket handshake is the exception: its connection runs in a task of its own
//! (hyper hands the upgraded stream over from there) and never returns to the pool.

use crate::body::limited::Driver;
use crate::body::Body;
use crate::gateway::framing::{self, FramingError, HeadFacts, MAX_RESPONSE_HEAD};
use crate::gateway::headers::connection_tokens;
use crate::gateway::upstream::idle::{Lease, UpstreamConn};
use crate::gateway::upstream::stream::UpstreamStream;
use http::header::CONNECTION;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::task::{Context, Poll};

/// A response whose head has arrived, with its connection while the body still needs it.
pub(super) type Forwarded = (Response<Incoming>, Option<Box<dyn Driver>>);

/// Why a request did not get a response head it may relay.
pub(super) enum SendError {
    /// Nothing of the request was written (the connection was found closed first): it
    /// comes back, to be sent on another connection.
    Unsent(Box<Request<Body>>, hyper::Error),
    /// The exchange failed after the request had started (the client's body, or the
    /// upstream).
    Failed(hyper::Error),
    /// The head breaks the framing rules ([`framing::check`]).
    Refused(FramingError),
}

type Conn = http1::Connection<TokioIo<UpstreamStream>, Body>;

/// Sends `req` (origin-form, its `Host` set) on `up` and waits for the response head.
pub(super) async fn send(
    up: UpstreamConn,
    req: Request<Body>,
    websocket: bool,
) -> Result<Forwarded, SendError> {
    let head_request = req.method() == Method::HEAD;
    let (stream, lease) = up.into_parts();
    let (mut sender, conn) = match http1::Builder::new()
        // The read buffer bounds a response head: the fast lane's limit on this path too.
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake(TokioIo::new(stream))
        .await
    {
        Ok(pair) => pair,
        Err(e) => return Err(SendError::Unsent(Box::new(req), e)),
    };
    if websocket {
        // Boxed: the handshake's state would otherwise widen every request's future (held in
        // each HTTP/2 stream's task and moved with it) by its ~1.4 KiB.
        return Box::pin(send_upgrade(sender, conn, lease, req)).await;
    }
    let mut drive = Drive {
        conn: Some(conn),
        lease: Some(lease),
        reusable: false,
    };
    let mut sending = std::pin::pin!(sender.try_send_request(req));
    let sent = std::future::poll_fn(|cx| {
        // The connection writes the request and reads the answer when polled; its outcome
        // reaches `sending` (a failure too), so only the response future is waited on.
        let _ = drive.poll_drive(cx);
        sending.as_mut().poll(cx)
    })
    .await;
    let response = match sent {
        Ok(response) => response,
        Err(mut e) => {
            return Err(match e.take_message() {
                Some(req) => SendError::Unsent(Box::new(req), e.into_error()),
                None => SendError::Failed(e.into_error()),
            })
        }
    };
    // No second request: the connection finishes once this one's answer is read.
    drop(sender);
    let facts = HeadFacts::of(response.version(), response.headers());
    // Refused: the connection is dropped (closed) with `drive`.
    framing::check(response.status(), facts, false).map_err(SendError::Refused)?;
    drive.reusable = keeps_alive(&response, facts, head_request);
    // A body-less answer, or one that came whole with its head, is done with already.
    let done = std::future::poll_fn(|cx| Poll::Ready(drive.poll_drive(cx).is_ready())).await;
    let driver: Option<Box<dyn Driver>> = match done {
        true => None,
        false => Some(Box::new(drive)),
    };
    Ok((response, driver))
}

/// A WebSocket handshake: the connection runs in a task of its own, which hands the
/// upgraded stream to [`hyper::upgrade::on`] after a `101` and then ends.
async fn send_upgrade(
    mut sender: http1::SendRequest<Body>,
    conn: Conn,
    lease: Lease,
    req: Request<Body>,
) -> Result<Forwarded, SendError> {
    tokio::spawn(async move {
        // Counted active until the handshake is over either way.
        let _lease = lease;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection of an upgrade request failed");
        }
    });
    let response = sender.send_request(req).await.map_err(SendError::Failed)?;
    let facts = HeadFacts::of(response.version(), response.headers());
    framing::check(response.status(), facts, true).map_err(SendError::Refused)?;
    Ok((response, None))
}

/// The connection may carry another request after this response (whose framing `facts`
/// were read already): HTTP/1.1 without `Connection: close`, and a body whose end is known
/// without the close.
fn keeps_alive(response: &Response<Incoming>, facts: HeadFacts, head_request: bool) -> bool {
    let status = response.status();
    let delimited = head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || facts.content_length
        || facts.transfer_encoding;
    if response.version() != Version::HTTP_11 || !delimited {
        return false;
    }
    let connection = response.headers().get_all(CONNECTION);
    !connection_tokens(connection.iter().map(|v| v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(b"close"))
}

/// A lent connection with hyper's HTTP/1.1 state on it, moved on by whoever reads the
/// response; back in its pool when the exchange is over and it may carry another.
struct Drive {
    /// `None` once done with.
    conn: Option<Conn>,
    /// Given back (parked) or dropped (closed) when done.
    lease: Option<Lease>,
    /// The response allows another request on the connection ([`keeps_alive`]).
    reusable: bool,
}

impl Driver for Drive {
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(conn) = &mut self.conn else {
            return Poll::Ready(());
        };
        match conn.poll_without_shutdown(cx) {
            Poll::Pending => return Poll::Pending,
            // Both directions are done with (hyper finishes an HTTP/1.1 client connection
            // once its one sender is gone and the exchange is complete).
            Poll::Ready(Ok(())) => {
                if let Some(conn) = self.conn.take() {
                    let parts = conn.into_parts();
                    // Bytes past the response mean the upstream is out of step: not reused.
                    if self.reusable && parts.read_buf.is_empty() {
                        if let Some(lease) = self.lease.take() {
                            lease.park(parts.io.into_inner());
                        }
                    }
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "pooled upstream connection failed");
                self.conn = None;
            }
        }
        Poll::Ready(())
    }
}
