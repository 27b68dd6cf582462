//! Relaying an upstream's response to the client by its framing (RFC 9112 §6.3): a known
//! length, a chunked body up to its last chunk and trailers, or everything until the
//! upstream closes. Bytes pass unchanged; at most one buffer of them is held at a time.

use super::wire::{ChunkScanner, Framing, ResponseHead};
use super::{make_room, Lane, Next, UpstreamConn};
use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

impl Lane<'_> {
    /// Sends the response head (in `response`) and the body to the client, then keeps the
    /// upstream connection if it can carry another request.
    pub(super) async fn relay(&mut self, mut up: UpstreamConn, head: ResponseHead) -> Next {
        let done = match head.framing {
            Framing::Empty => self.send_head_and(&mut up, 0).await,
            Framing::Length(n) => self.relay_length(&mut up, n).await,
            Framing::Chunked => self.relay_chunked(&mut up).await,
            Framing::UntilClose => {
                let _ = self.relay_until_close(&mut up).await;
                return Next::Close;
            }
        };
        match done {
            Ok(()) => {
                // Bytes past the response mean the upstream is out of step: not reused.
                if head.reusable && up.buf.is_empty() {
                    self.idle.keep(up);
                }
                Next::KeepAlive
            }
            Err(RelayError::Client) => Next::Close,
            // The head is out, so the client cannot get a 502 now: end its connection, which
            // tells it the body is incomplete.
            Err(RelayError::Upstream) => Next::Close,
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
        self.client
            .write_all(&self.response)
            .await
            .map_err(|_| RelayError::Client)
    }

    async fn relay_length(&mut self, up: &mut UpstreamConn, length: u64) -> Result<(), RelayError> {
        let first = up
            .buf
            .len()
            .min(usize::try_from(length).unwrap_or(usize::MAX));
        self.send_head_and(up, first).await?;
        let mut left = length - first as u64;
        while left > 0 {
            read_upstream(up).await?;
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

    async fn relay_chunked(&mut self, up: &mut UpstreamConn) -> Result<(), RelayError> {
        let mut scanner = ChunkScanner::default();
        let first = scanner.advance(&up.buf).map_err(|_| RelayError::Upstream)?;
        self.send_head_and(up, first).await?;
        while !scanner.is_done() {
            read_upstream(up).await?;
            let take = scanner.advance(&up.buf).map_err(|_| RelayError::Upstream)?;
            self.write_client(&up.buf[..take]).await?;
            up.buf.advance(take);
        }
        Ok(())
    }

    async fn relay_until_close(&mut self, up: &mut UpstreamConn) -> Result<(), RelayError> {
        let first = up.buf.len();
        self.send_head_and(up, first).await?;
        loop {
            make_room(&mut up.buf);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    let chunk = up.buf.split();
                    self.write_client(&chunk).await?;
                }
                Err(_) => return Err(RelayError::Upstream),
            }
        }
    }

    async fn write_client(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        self.client
            .write_all(bytes)
            .await
            .map_err(|_| RelayError::Client)
    }
}

/// Which side broke off a body relay.
enum RelayError {
    Client,
    Upstream,
}

/// Reads more of the upstream's body; its end before the framing says is an error.
async fn read_upstream(up: &mut UpstreamConn) -> Result<(), RelayError> {
    make_room(&mut up.buf);
    match up.stream.read_buf(&mut up.buf).await {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(RelayError::Upstream),
    }
}
