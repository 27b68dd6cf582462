//! A client connection's own upstream connections: connecting, the idle ones kept for its
//! next requests (bounded per client and process-wide), and the check that an idle one is
//! still fit to carry a request.

use super::BUFFER;
use crate::gateway::upstream::{Target, CONNECT_TIMEOUT};
use bytes::BytesMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;

/// Idle upstream connections one client connection keeps (one per target it uses).
const MAX_IDLE_PER_CLIENT: usize = 4;
/// Idle upstream connections kept by all client connections together (the pooled client
/// keeps up to as many per upstream): idle clients must not hold an upstream's every slot.
const MAX_IDLE_TOTAL: usize = 1024;
static IDLE_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// One keep-alive connection to a target, with the bytes read from it and not yet relayed.
pub(super) struct UpstreamConn {
    target: usize,
    pub stream: TcpStream,
    pub buf: BytesMut,
}

/// The idle connections of one client connection; they close when it ends.
#[derive(Default)]
pub(super) struct IdleSet {
    conns: Vec<UpstreamConn>,
}

impl UpstreamConn {
    pub async fn connect(target: &Target) -> std::io::Result<UpstreamConn> {
        let stream =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.connect_addr()))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
        stream.set_nodelay(true)?;
        Ok(UpstreamConn {
            target: target.id,
            stream,
            buf: BytesMut::with_capacity(BUFFER),
        })
    }

    /// Nothing has arrived while idle: no close, and no stray bytes (an upstream's `408`,
    /// say) that would be taken for the next response. Costs no system call when the
    /// socket's readiness says there is nothing to read.
    fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(
            self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        )
    }
}

impl IdleSet {
    /// An idle connection to `target` that is still quiet; one that is not is closed.
    pub fn take(&mut self, target: usize) -> Option<UpstreamConn> {
        let index = self.conns.iter().position(|c| c.target == target)?;
        Some(self.remove(index)).filter(UpstreamConn::is_quiet)
    }

    /// Keeps `up` for this client's next request, within both limits; else it closes.
    pub fn keep(&mut self, up: UpstreamConn) {
        if self.conns.len() >= MAX_IDLE_PER_CLIENT {
            drop(self.remove(0));
        }
        if IDLE_TOTAL.fetch_add(1, Ordering::Relaxed) >= MAX_IDLE_TOTAL {
            IDLE_TOTAL.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.conns.push(up);
    }

    fn remove(&mut self, index: usize) -> UpstreamConn {
        IDLE_TOTAL.fetch_sub(1, Ordering::Relaxed);
        self.conns.swap_remove(index)
    }
}

impl Drop for IdleSet {
    fn drop(&mut self) {
        IDLE_TOTAL.fetch_sub(self.conns.len(), Ordering::Relaxed);
    }
}
