//! What hyper's HTTP/1.1 server makes of a request head: the oracle the fast lane's parser
//! (`wire::parse_request`) is compared with, by the property test in tests/it/properties.rs
//! and by the fuzz target `request_head_vs_hyper` (which includes this file by path, so it
//! uses only hyper, hyper-util, tokio, http and bytes).
//!
//! The head is replayed through an in-memory stream (bytes, then end of stream; writes are
//! swallowed) into `hyper::server::conn::http1` with a service that records what it was
//! handed and answers 200. No service call means hyper refused the head.

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tollgate::gateway::fast::wire::RequestHead;

/// The parts of a request head both parsers must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as hyper's `Uri` holds it (origin-form: path and query).
    pub target: String,
    pub version: Version,
    /// Headers in order, names lower-case as `HeaderMap` keeps them.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// The same view of the fast lane's parse.
    pub fn of_fast_lane(head: &RequestHead) -> Head {
        Head {
            method: head.method.as_str().to_string(),
            target: head.target.as_str().to_string(),
            version: Version::HTTP_11,
            // As a map, so duplicates group as in hyper's; a name `HeaderName` refuses shows
            // as none at all, which no hyper parse matches.
            headers: head
                .headers
                .to_map()
                .map(|map| header_list(&map))
                .unwrap_or_default(),
        }
    }
}

fn header_list(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Serves `bytes` (one request head) with hyper on `rt` and returns what its service saw,
/// or `None` when hyper refused the head.
pub fn parse_with_hyper(rt: &tokio::runtime::Runtime, bytes: &[u8]) -> Option<Head> {
    let seen: Arc<Mutex<Option<Head>>> = Arc::default();
    let record = seen.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let head = Head {
            method: req.method().as_str().to_string(),
            target: req.uri().to_string(),
            version: req.version(),
            headers: header_list(req.headers()),
        };
        if let Ok(mut slot) = record.lock() {
            *slot = Some(head);
        }
        async { Ok::<_, Infallible>(Response::new(http_body_util::Empty::<Bytes>::new())) }
    });
    let io = Replay {
        data: Bytes::copy_from_slice(bytes),
    };
    rt.block_on(async {
        // The result is irrelevant: a refused head ends the connection before the service.
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .await;
    });
    let head = seen.lock().ok()?.take();
    head
}

/// Reads `data`, then end of stream; accepts and drops every write.
struct Replay {
    data: Bytes,
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.data.len().min(buf.remaining());
        buf.put_slice(&this.data.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
