//! A stream with bytes already read from it put back in front, so that hyper can take
//! over a connection the fast lane has started reading.

use super::write_through::write_through_to_inner;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// `prefix` is read first, then `inner`; writes go straight to `inner`. Once read, the
/// prefix's memory (it may be a slice of a larger read buffer) is let go.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // An empty slice would still hold the whole buffer it came from.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

// Writes are not watched: they go straight to the inner stream.
write_through_to_inner!(Prefixed);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_prefix_comes_before_the_stream() {
        let inner: &[u8] = b" world";
        let mut stream = Prefixed::new(Bytes::from_static(b"hello"), inner);
        let mut all = String::new();
        stream.read_to_string(&mut all).await.expect("reads");
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn a_read_prefix_no_longer_holds_the_buffer_it_came_from() {
        let whole = Bytes::from(b"GET / HTTP/1.1\r\n\r\n and room to spare".to_vec());
        let inner: &[u8] = b"";
        let mut stream = Prefixed::new(whole.slice(..18), inner);
        let mut head = Vec::new();
        stream.read_to_end(&mut head).await.expect("reads");
        assert_eq!(head, b"GET / HTTP/1.1\r\n\r\n");
        assert!(whole.is_unique(), "the prefix let go of the read buffer");
    }
}
