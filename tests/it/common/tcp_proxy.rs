//! A TCP proxy the test controls, to cut one instance's link to a server (Redis) while
//! other instances keep theirs.
//!
//! [`TcpProxy::cut`] closes every forwarded connection and from then on accepts new ones
//! but forwards nothing on them (a partition: connecting works, nothing ever answers, the
//! client must notice by its own timeouts). [`TcpProxy::restore`] closes those silent
//! connections and forwards new ones again.

use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What connections accepted now get.
#[derive(Debug, Clone, Copy)]
struct State {
    cut: bool,
    /// Changes on every cut and restore: connections accepted before end then.
    epoch: u64,
}

/// A loopback proxy to `target`; stops (closing everything) when dropped.
pub struct TcpProxy {
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (state, watch) = watch::channel(State {
            cut: false,
            epoch: 0,
        });
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut watch = watch.clone();
                let now = *watch.borrow_and_update();
                tokio::spawn(async move {
                    if now.cut {
                        // Hold the connection open, say nothing, until the next change.
                        let _ = watch.changed().await;
                        return;
                    }
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            state,
            accept,
        }
    }

    /// Closes every connection; new ones are accepted and left silent.
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.cut = true;
            s.epoch += 1;
        });
    }

    /// Closes the silent connections; new ones are forwarded again.
    pub fn restore(&self) {
        self.state.send_modify(|s| {
            s.cut = false;
            s.epoch += 1;
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Dropping `state` ends every connection task (their `changed()` returns).
    }
}
