//! What a handler's fast lane ([`super::FastLane`]) needs of a client connection, plain TCP
//! or TLS (rustls): bytes both ways, a wait for the next request that holds no buffer, and a
//! close that is a reset. It is the transport's, so the server hands the lane a stream
//! without knowing what the lane does with it.
//!
//! A lane works on `&mut dyn ClientIo`, so one copy of it serves both kinds of stream (a
//! virtual call per poll costs nothing beside the system call under it).

use std::io;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A client connection the fast lane can serve.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {
    /// Ready when a read may return bytes (or the end): the idle wait, made without a
    /// read buffer so that an idle connection holds none. A spurious wake-up is harmless
    /// (the read that follows waits).
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The connection is to end in a reset (RST) rather than a close, and without a TLS
    /// `close_notify`: after a body delimited by the close, a clean end would pass a cut
    /// body off as whole.
    fn reset_on_close(&self);
}

/// A boxed stream (a TLS one: rustls's state is over a kilobyte, kept out of the task).
impl<S: ClientIo + ?Sized> ClientIo for Box<S> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_readable(cx)
    }

    fn reset_on_close(&self) {
        (**self).reset_on_close()
    }
}

impl ClientIo for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }

    fn reset_on_close(&self) {
        let _ = self.set_zero_linger();
    }
}

impl ClientIo for TlsStream<TcpStream> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_ref();
        // Plaintext already decrypted (a pipelined request), or the peer's close_notify:
        // the socket may have nothing more to say, but a read does.
        if !tls.wants_read() {
            return Poll::Ready(Ok(()));
        }
        tcp.poll_read_ready(cx)
    }

    fn reset_on_close(&self) {
        let _ = self.get_ref().0.set_zero_linger();
    }
}
