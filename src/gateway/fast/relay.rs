//! Relaying an upstream's response to the client by its framing (RFC 9112 §6.3): a known
//! length, a chunked body up to its last chunk and trailers, or everything until the
//! upstream closes. Bytes pass unchanged; at most one buffer of them is held at a time.
//!
//! Once the head is out the client cannot get a 502, so a body the upstream breaks off,
//! frames wrongly or stalls in (no bytes for the route's `timeout`, nginx's
//! `proxy_read_timeout` rule) aborts the client connection with a reset: a client must never
//! take a cut or merged body for a whole one, even one delimited by the close.

use super::wire::{ChunkScanner, Framing, ResponseHead};
use super::{make_room, send, Lane, Next, UpstreamConn};
use bytes::Buf;
use std::time::Duration;
use tokio::io::AsyncReadExt;

impl Lane<'_> {
    /// Sends the response head (in `response`) and the body to the client, then puts the
    /// upstream connection back in its target's pool if it can carry another request. `pause` bounds each wait for
    /// more of the body.
    pub(super) async fn relay(
        &mut self,
        mut up: UpstreamConn,
        head: ResponseHead,
        pause: Duration,
    ) -> Next {
        self.sent = 0;
        let done = match head.framing {
            Framing::Empty => self.send_head_and(&mut up, 0).await,
            Framing::Length(n) => self.relay_length(&mut up, n, pause).await,
            Framing::Chunked => self.relay_chunked(&mut up, pause).await,
            Framing::UntilClose => self.relay_until_close(&mut up, pause).await,
        };
        match done {
            Ok(()) if head.framing == Framing::UntilClose => Next::Close,
            Ok(()) => {
                // Bytes past the response mean the upstream is out of step: not reused.
                if head.reusable && up.buf.is_empty() {
                    up.park();
                }
                Next::KeepAlive
            }
            Err(RelayError::Client) => Next::Close,
            // The upstream connection goes with `up`. A reset rather than a close: after a
            // body delimited by the close, a plain close would read as its clean end.
            Err(RelayError::Upstream) => {
                self.client.reset_on_close();
                self.reset = true;
                Next::Close
            }
        }
    }

    /// Writes the head with the first `body` bytes of the upstream's buffer in one go.
    async fn send_head_and(
        &mut self,
        up: &mut UpstreamConn,
        body: usize,
    ) -> Result<(), RelayError> {
        self.response.extend_from_slice(&up.buf[..body]);
        up.buf.advance(body);
        self.sent += body as u64;
        send(&mut *self.client, &self.response)
            .await
            .map_err(|_| RelayError::Client)
    }

    async fn relay_length(
        &mut self,
        up: &mut UpstreamConn,
        length: u64,
        pause: Duration,
    ) -> Result<(), RelayError> {
        let first = up
            .buf
            .len()
            .min(usize::try_from(length).unwrap_or(usize::MAX));
        self.send_head_and(up, first).await?;
        let mut left = length - first as u64;
        while left > 0 {
            read_upstream(up, pause).await?;
            let take = up
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            self.write_client(&up.buf[..take]).await?;
            up.buf.advance(take);
            left -= take as u64;
        }
        Ok(())
    }

    async fn relay_chunked(
        &mut self,
        up: &mut UpstreamConn,
        pause: Duration,
    ) -> Result<(), RelayError> {
        let mut scanner = ChunkScanner::default();
        let first = scanner.advance(&up.buf).map_err(|_| RelayError::Upstream)?;
        self.send_head_and(up, first).await?;
        while !scanner.is_done() {
            read_upstream(up, pause).await?;
            let take = scanner.advance(&up.buf).map_err(|_| RelayError::Upstream)?;
            self.write_client(&up.buf[..take]).await?;
            up.buf.advance(take);
        }
        Ok(())
    }

    async fn relay_until_close(
        &mut self,
        up: &mut UpstreamConn,
        pause: Duration,
    ) -> Result<(), RelayError> {
        let first = up.buf.len();
        self.send_head_and(up, first).await?;
        loop {
            make_room(&mut up.buf);
            match tokio::time::timeout(pause, up.stream.read_buf(&mut up.buf)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {
                    let chunk = up.buf.split();
                    self.write_client(&chunk).await?;
                }
                Ok(Err(_)) | Err(_) => return Err(RelayError::Upstream),
            }
        }
    }

    async fn write_client(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        send(&mut *self.client, bytes)
            .await
            .map_err(|_| RelayError::Client)?;
        self.sent += bytes.len() as u64;
        Ok(())
    }
}

/// Which side broke off a body relay.
enum RelayError {
    Client,
    Upstream,
}

/// Reads more of the upstream's body within `pause`; its end before the framing says is an
/// error. The timer is only registered when the read has to wait.
async fn read_upstream(up: &mut UpstreamConn, pause: Duration) -> Result<(), RelayError> {
    make_room(&mut up.buf);
    match tokio::time::timeout(pause, up.stream.read_buf(&mut up.buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(RelayError::Upstream),
    }
}
