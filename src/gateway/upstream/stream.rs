//! An upstream connection's byte stream: plain TCP to an `http://` origin, TLS (rustls,
//! [`super::tls`]) over TCP to an `https://` one. Both engines and the pool ([`super::idle`])
//! hold this one type, so a TLS connection is pooled, reused and counted exactly like a
//! plain one.
//!
//! An enum rather than a trait object: the plain case, the fast lane's hot one, costs a
//! branch per read or write and no dynamic call. Both variants are boxed (one allocation per
//! new connection, none per request): the stream is two words wherever a request's future
//! holds it, smaller than a bare `TcpStream`, and the TLS state (a rustls connection, some
//! kilobytes) makes no plain connection larger. Measured with `benches/callgrind_proxy.sh`
//! against a bare `TcpStream` before `https://` joined the pool: h1-get +0.3%, h1-guarded
//! -0.3% (an unboxed `TcpStream` variant was +0.6% on h1-get).

use super::tls::TlsTarget;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to an upstream origin, plain or TLS (boxed, see the module's comment).
pub enum UpstreamStream {
    Plain(Box<TcpStream>),
    Tls(Box<TlsStream<TcpStream>>),
}

// === impl UpstreamStream ===

impl UpstreamStream {
    /// Connects to `addr` (`host:port`), then, for an `https://` origin, completes the TLS
    /// handshake (SNI and certificate checked against `tls`'s server name). The caller
    /// bounds the whole of it in time.
    pub async fn connect(addr: &str, tls: Option<&TlsTarget>) -> io::Result<UpstreamStream> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(UpstreamStream::Plain(Box::new(tcp))),
            // Boxed: the handshake's state (a whole rustls connection) would otherwise sit
            // in every request's future, plain ones too.
            Some(tls) => Ok(UpstreamStream::Tls(Box::new(
                Box::pin(tls.handshake(tcp)).await?,
            ))),
        }
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamStream::Plain(tcp) => tcp,
            UpstreamStream::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Nothing has arrived while idle: no close (a TCP FIN, or TLS `close_notify`), and no
    /// stray bytes (an upstream's `408`, say) that would be taken for the next response.
    /// Plain: one non-blocking read, no system call when the socket's readiness says there
    /// is nothing. TLS: one poll of the TLS reader, which also takes in any records rustls
    /// has buffered or the socket holds (a session ticket is consumed, not counted).
    pub fn is_quiet(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self {
            UpstreamStream::Plain(tcp) => matches!(
                tcp.try_read(&mut probe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
            UpstreamStream::Tls(tls) => {
                let mut buf = ReadBuf::new(&mut probe);
                // The waker is replaced by the next real poll of whoever takes the stream.
                let mut cx = Context::from_waker(Waker::noop());
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp.as_mut()).poll_read(cx, buf),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp.as_mut()).poll_write(cx, buf),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp.as_mut()).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(tcp) => tcp.is_write_vectored(),
            UpstreamStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    /// TLS holds records back until a flush; plain TCP has nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp.as_mut()).poll_flush(cx),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(tcp) => Pin::new(tcp.as_mut()).poll_shutdown(cx),
            UpstreamStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Drop for UpstreamStream {
    /// A TLS connection ends with the client's `close_notify` (RFC 8446 §6.1), as a TLS
    /// client should: an upstream then sees an orderly close, not a truncation to log, when
    /// the pool lets an idle connection go or a request gives one up. Best effort, and
    /// never a wait: one attempt to write the alert and shut the sending side, with no one
    /// to wake (a socket with no room for it, rare for a connection so closed, is closed
    /// without it).
    fn drop(&mut self) {
        if let UpstreamStream::Tls(tls) = self {
            let mut cx = Context::from_waker(Waker::noop());
            let _ = Pin::new(tls.as_mut()).poll_shutdown(&mut cx);
        }
    }
}
