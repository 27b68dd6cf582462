//! `/readyz`: whether this instance should get traffic. Not while it drains (shutdown has
//! begun; the balancer should stop sending before the listener closes) and not while the
//! token store does not answer (every `/oauth/*` request and every uncached token check
//! would fail). `/healthz` is liveness only and stays 200 while the process runs.
//!
//! The store is probed by one background task every [`PROBE_EVERY`] with a cheap read (a
//! `get` of a fixed hash that no token has), bounded by [`PROBE_TIMEOUT`]; the answer is
//! kept in `tollgate_store_up`, so however often `/readyz` and `/metrics` are scraped the
//! store sees one probe a second.

use crate::metrics::Metrics;
use crate::store::{TokenHash, TokenStore};
use prometheus::IntGauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the store is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A store slower than this to answer a single read counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The key the probe reads: the SHA-256 of no token anyone can present.
const PROBE_HASH: TokenHash = [0; 32];

/// What `/readyz` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Draining,
    StoreUnavailable,
}

impl Readiness {
    /// The `status` value of the `/readyz` body.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ready => "ok",
            Self::Draining => "draining",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// Reads the drain flag and the store probe's last answer.
pub struct ReadinessCheck {
    draining: watch::Receiver<bool>,
    store_up: IntGauge,
}

impl ReadinessCheck {
    /// `draining` turns true when shutdown begins; `metrics.store_up` is kept by [`probe`].
    pub fn new(draining: watch::Receiver<bool>, metrics: &Metrics) -> Self {
        Self {
            draining,
            store_up: metrics.store_up.clone(),
        }
    }

    pub fn now(&self) -> Readiness {
        if *self.draining.borrow() {
            Readiness::Draining
        } else if self.store_up.get() != 1 {
            Readiness::StoreUnavailable
        } else {
            Readiness::Ready
        }
    }
}

/// Probes the store every [`PROBE_EVERY`] into `store_up` until `stop` turns true.
pub async fn probe(
    store: Arc<dyn TokenStore>,
    store_up: IntGauge,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let up = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, store.get(PROBE_HASH)).await,
            Ok(Ok(_))
        );
        if up != (store_up.get() == 1) {
            if up {
                tracing::info!("the token store answers again");
            } else {
                tracing::warn!("the token store does not answer: /readyz reports not ready");
            }
        }
        store_up.set(i64::from(up));
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}
