//! The revocation feed: how a revocation made at the store reaches every guard that may have
//! the token cached.
//!
//! The store publishes; guards subscribe. Nothing else connects the authorization server to
//! a guard. In one process (memory, SQLite, and this instance's own revocations on Redis)
//! delivery is a direct call that the revoking store call awaits, so the revocation has
//! taken effect in this process's caches before `/oauth/revoke` answers. Revocations made
//! by other instances arrive through the store's shared channel (the Redis stream) and are
//! handed to the same subscribers.

use super::TokenHash;
use crate::metrics::RevocationMetrics;
use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One thing a subscriber must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The token with this hash was revoked.
    Token(TokenHash),
    /// Revocations may have been missed (the shared channel lost its place): every cached
    /// answer must be forgotten.
    Everything,
}

/// A subscriber: the guard's verify cache.
pub trait RevocationSink: Send + Sync + 'static {
    /// Acts on one revocation; returns once it has taken effect.
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()>;
}

/// Where a store's revocations can be subscribed to.
pub trait RevocationFeed {
    /// Hands every later revocation to `sink`, for as long as the sink lives elsewhere (the
    /// feed holds it weakly: the sink's owner usually holds the store).
    fn subscribe(&self, sink: &Arc<dyn RevocationSink>);

    /// Counts what the feed delivers in `metrics` from now on (set once; later calls are
    /// ignored).
    fn count_in(&self, metrics: RevocationMetrics);

    /// How long the feed's shared channel (the Redis stream, the SQLite revocations table)
    /// has gone without proving that it delivers: `None` when the feed has no shared channel
    /// (every revocation is made in this process and delivered at once), `Duration::MAX` when
    /// it has never been heard from. The guard re-checks cached answers at the store once
    /// this passes `[verify] max_stale`.
    fn silent_for(&self) -> Option<Duration>;
}

/// The instant `LocalFeed` times are counted from (milliseconds after it, plus one, so that
/// zero can mean "never").
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The in-process feed every store carries: a list of subscribers, called in turn.
#[derive(Default)]
pub struct LocalFeed {
    sinks: RwLock<Vec<Weak<dyn RevocationSink>>>,
    metrics: OnceLock<RevocationMetrics>,
    /// Set by a store whose revocations also arrive over a shared channel.
    shared: AtomicBool,
    /// When that channel last proved it delivers (ms after [`EPOCH`] + 1; 0: never).
    heard_at: AtomicU64,
}

// === impl LocalFeed ===

impl LocalFeed {
    pub fn subscribe(&self, sink: &Arc<dyn RevocationSink>) {
        let mut sinks = self.sinks.write().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(Arc::downgrade(sink));
    }

    /// Delivers `events` to every live subscriber; returns when all of them have acted.
    pub async fn publish(&self, events: impl IntoIterator<Item = Revoked>) {
        let sinks: Vec<Arc<dyn RevocationSink>> = {
            // A panic while holding the lock leaves a valid list behind, so poison is harmless.
            let sinks = self.sinks.read().unwrap_or_else(|p| p.into_inner());
            sinks.iter().filter_map(Weak::upgrade).collect()
        };
        if sinks.is_empty() {
            return;
        }
        for event in events {
            for sink in &sinks {
                sink.revoked(event).await;
            }
        }
    }

    /// Publishes token hashes this instance revoked.
    pub async fn publish_tokens(&self, hashes: &[TokenHash]) {
        if let Some(m) = self.metrics.get() {
            m.local.inc_by(hashes.len() as u64);
        }
        self.publish(hashes.iter().copied().map(Revoked::Token))
            .await
    }

    /// Publishes token hashes another instance revoked at `sent_at` (ms since the epoch).
    pub async fn publish_remote(&self, hashes: &[TokenHash], sent_at: u64) {
        if let Some(m) = self.metrics.get() {
            m.stream.inc_by(hashes.len() as u64);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            m.lag.observe(now.saturating_sub(sent_at) as f64 / 1000.0);
        }
        self.publish(hashes.iter().copied().map(Revoked::Token))
            .await
    }

    /// Says that revocations also arrive over a shared channel (other instances'), whose
    /// liveness [`Self::stream_up`] reports from now on.
    pub fn share(&self) {
        self.shared.store(true, Ordering::Relaxed);
    }

    /// Notes whether the shared channel (the Redis stream, the SQLite revocations table) is
    /// being read. `true` means a read just succeeded: everything revoked elsewhere before
    /// that read has been delivered.
    pub fn stream_up(&self, up: bool) {
        if up {
            let ms = EPOCH.elapsed().as_millis() as u64 + 1;
            self.heard_at.store(ms, Ordering::Relaxed);
        }
        if let Some(m) = self.metrics.get() {
            m.stream_up.set(i64::from(up));
        }
    }

    /// See [`RevocationFeed::silent_for`].
    pub fn silent_for(&self) -> Option<Duration> {
        if !self.shared.load(Ordering::Relaxed) {
            return None;
        }
        match self.heard_at.load(Ordering::Relaxed) {
            0 => Some(Duration::MAX),
            heard => {
                let now = EPOCH.elapsed().as_millis() as u64 + 1;
                Some(Duration::from_millis(now.saturating_sub(heard)))
            }
        }
    }

    pub fn count_in(&self, metrics: RevocationMetrics) {
        let _ = self.metrics.set(metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<Revoked>>);

    impl RevocationSink for Seen {
        fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
            self.0.lock().expect("not poisoned").push(event);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn every_live_subscriber_gets_every_revocation_before_publish_returns() {
        let feed = LocalFeed::default();
        let a: Arc<Seen> = Arc::default();
        let b: Arc<Seen> = Arc::default();
        let (sa, sb): (Arc<dyn RevocationSink>, Arc<dyn RevocationSink>) = (a.clone(), b.clone());
        feed.subscribe(&sa);
        feed.subscribe(&sb);
        feed.publish_tokens(&[[1; 32], [2; 32]]).await;
        let want = vec![Revoked::Token([1; 32]), Revoked::Token([2; 32])];
        assert_eq!(*a.0.lock().expect("not poisoned"), want);
        assert_eq!(*b.0.lock().expect("not poisoned"), want);
    }

    #[test]
    fn a_feed_without_a_shared_channel_is_never_silent_and_a_shared_one_is_until_heard() {
        let feed = LocalFeed::default();
        assert_eq!(feed.silent_for(), None);
        feed.share();
        assert_eq!(feed.silent_for(), Some(Duration::MAX));
        feed.stream_up(true);
        assert!(feed
            .silent_for()
            .is_some_and(|d| d < Duration::from_secs(1)));
        feed.stream_up(false);
        assert!(
            feed.silent_for()
                .is_some_and(|d| d < Duration::from_secs(1)),
            "down does not reset the last read"
        );
    }

    #[tokio::test]
    async fn a_dropped_subscriber_is_not_kept_alive_by_the_feed() {
        let feed = LocalFeed::default();
        let a: Arc<Seen> = Arc::default();
        let sa: Arc<dyn RevocationSink> = a.clone();
        feed.subscribe(&sa);
        let weak = Arc::downgrade(&a);
        drop((a, sa));
        assert!(weak.upgrade().is_none());
        feed.publish([Revoked::Everything]).await;
    }
}
