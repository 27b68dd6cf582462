//! The one response/request body type the server speaks: either bytes we made, or a
//! body streaming from the other side (never buffered), maybe under a request body's
//! limits ([`limited`]).

pub mod limited;
pub mod logged;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use limited::LimitedBody;
use logged::LoggedBody;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body we produced (JSON, HTML, metrics) or one we stream through.
#[derive(Debug)]
pub enum Body {
    /// Bytes held in memory; `None` once sent.
    Full(Option<Bytes>),
    /// A body streaming from a peer, passed on frame by frame.
    Stream(Incoming),
    /// A client's request body on its way to an upstream, under the size and pause limits,
    /// or an upstream's response body under the pause limit.
    Limited(LimitedBody),
    /// A response body that writes its access-log entry when done with.
    Logged(Box<LoggedBody>),
    /// An upstream's response body read by the gateway itself (the hyper path's body-less
    /// requests), under the pause limit.
    Relayed(RelayedBody),
}

/// A body the gateway reads from an upstream connection itself; boxed, as what it holds
/// (the connection, its framing) is the gateway's business.
pub struct RelayedBody(pub Pin<Box<dyn http_body::Body<Data = Bytes, Error = BodyError> + Send>>);

impl std::fmt::Debug for RelayedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayedBody").finish_non_exhaustive()
    }
}

/// Why a body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body could not be read")]
    Peer(#[from] hyper::Error),
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body paused for longer than {timeout_ms} ms")]
    Stalled { timeout_ms: u128 },
    #[error("the upstream's body broke off: {0}")]
    Cut(&'static str),
}

impl BodyError {
    /// The body error somewhere in `e`'s cause chain (a client that sent a body reports
    /// it wrapped in its own errors).
    pub fn find<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyError> {
        let mut cause = Some(e);
        while let Some(c) = cause {
            if let Some(found) = c.downcast_ref::<BodyError>() {
                return Some(found);
            }
            cause = c.source();
        }
        None
    }
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
            Body::Limited(limited) => Pin::new(limited).poll_frame(cx),
            Body::Logged(logged) => Pin::new(logged.as_mut()).poll_frame(cx),
            Body::Relayed(relayed) => relayed.0.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(bytes) => bytes.as_ref().is_none_or(|b| b.is_empty()),
            Body::Stream(incoming) => incoming.is_end_stream(),
            Body::Limited(limited) => limited.is_end_stream(),
            Body::Logged(logged) => logged.is_end_stream(),
            Body::Relayed(relayed) => relayed.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(incoming) => incoming.size_hint(),
            Body::Limited(limited) => limited.size_hint(),
            Body::Logged(logged) => logged.size_hint(),
            Body::Relayed(relayed) => relayed.0.size_hint(),
        }
    }
}
