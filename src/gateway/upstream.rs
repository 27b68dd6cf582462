//! Upstream targets of a route: round-robin choice, skipping targets that recently
//! refused connections, and the pooled keep-alive client shared by all routes.

use super::fast::IdleConns;
use super::framing::MAX_RESPONSE_HEAD;
use crate::body::Body;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a target that refused a connection is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// How long either engine waits for a connection to a target (TCP, and TLS here).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client every route forwards through: keep-alive, pooled per upstream authority.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the shared upstream client (HTTP/1.1 to upstreams, TLS for `https://` ones).
pub fn client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        // The read buffer bounds a response head: the fast lane's limit on this path too.
        .http1_max_buf_size(MAX_RESPONSE_HEAD)
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(https)
}

/// One upstream base URL.
#[derive(Debug)]
pub struct Target {
    /// The fast lane's idle connections to this target, shared by every client connection
    /// (closed when a reload retires the target).
    pub idle: Arc<IdleConns>,
    scheme: Scheme,
    authority: Authority,
    /// Path of the upstream URL without a trailing slash; empty for `/`.
    base_path: String,
    /// `host:port`, see [`Target::connect_addr`].
    connect_addr: String,
    /// See [`Target::host_header`].
    host_header: String,
    /// The URL as configured, for logs, with any userinfo blanked (never for clients).
    pub label: Arc<str>,
    /// Milliseconds (since `epoch()`) until which this target is skipped.
    down_until: AtomicU64,
}

/// A route's targets in round-robin order.
#[derive(Debug)]
pub struct UpstreamPool {
    targets: Vec<Target>,
    next: AtomicUsize,
}

// === impl Target ===

impl Target {
    fn new(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme()?.clone();
        let authority = uri.authority()?.clone();
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            authority.host().to_string()
        } else {
            format!("{}:{port}", authority.host())
        };
        Some(Self {
            idle: Arc::default(),
            connect_addr: format!("{}:{port}", authority.host()),
            host_header,
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            label: Arc::from(crate::config::redact_userinfo(&uri.to_string()).as_ref()),
            down_until: AtomicU64::new(0),
        })
    }

    /// The upstream URI for a (normalised) request path and optional query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        let pq = PathAndQuery::try_from(self.join(path, query))?;
        self.uri_with(pq)
    }

    /// Base path + request path + `?query`.
    fn join(&self, path: &str, query: Option<&str>) -> String {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        pq
    }

    /// The upstream URI reusing the request's own path and query (the common, cheap case).
    pub fn uri_with(&self, pq: PathAndQuery) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }

    /// The upstream's path and query for a request: the original target when routing
    /// changed nothing, else the base path, the (normalised, maybe stripped) path and the
    /// query.
    pub fn path_and_query<'a>(&self, original: &'a PathAndQuery, path: &str) -> Cow<'a, str> {
        if original.path() == path && self.base_path.is_empty() {
            return Cow::Borrowed(original.as_str());
        }
        Cow::Owned(self.join(path, original.query()))
    }

    /// Plain `http://`: the fast lane can speak to it over a bare TCP connection.
    pub fn is_plain_http(&self) -> bool {
        self.scheme == Scheme::HTTP
    }

    /// `host:port` to connect to, with the scheme's default port filled in.
    pub fn connect_addr(&self) -> &str {
        &self.connect_addr
    }

    /// The `Host` header the upstream receives: its host, and its port unless it is the
    /// scheme's default (what hyper's client sends on the other path).
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    pub fn mark_down(&self) {
        let until = now_ms() + DOWN_FOR.as_millis() as u64;
        self.down_until.store(until, Ordering::Relaxed);
    }

    fn is_down(&self, now: u64) -> bool {
        self.down_until.load(Ordering::Relaxed) > now
    }
}

// === impl UpstreamPool ===

impl UpstreamPool {
    pub fn new(uris: &[Uri]) -> Self {
        Self {
            targets: uris.iter().filter_map(Target::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Every target is plain `http://` (the fast lane's condition).
    pub fn all_plain_http(&self) -> bool {
        self.targets.iter().all(Target::is_plain_http)
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The next target in turn that is not marked down; if all are down, the next in turn
    /// anyway (better a try than a certain failure).
    pub fn pick(&self) -> Option<&Target> {
        let n = self.targets.len();
        if n == 1 {
            return self.targets.first();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        (0..n)
            .map(|i| &self.targets[(start + i) % n])
            .find(|t| !t.is_down(now))
            .or_else(|| self.targets.get(start % n.max(1)))
    }
}

/// Milliseconds since the first call; a monotonic clock cheap enough for every request.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(urls: &[&str]) -> UpstreamPool {
        let uris: Vec<Uri> = urls.iter().map(|u| u.parse().expect("test URL")).collect();
        UpstreamPool::new(&uris)
    }

    #[test]
    fn round_robin_visits_every_target() {
        let p = pool(&["http://a:1", "http://b:2", "http://c:3"]);
        let picked: Vec<String> = (0..6)
            .map(|_| p.pick().expect("targets").label.to_string())
            .collect();
        assert_eq!(
            picked,
            [
                "http://a:1/",
                "http://b:2/",
                "http://c:3/",
                "http://a:1/",
                "http://b:2/",
                "http://c:3/"
            ]
        );
    }

    #[test]
    fn a_target_marked_down_is_skipped_until_all_are_down() {
        let p = pool(&["http://a:1", "http://b:2"]);
        p.targets[0].mark_down();
        for _ in 0..4 {
            assert_eq!(&*p.pick().expect("targets").label, "http://b:2/");
        }
        p.targets[1].mark_down();
        assert!(p.pick().is_some(), "all down still yields a target to try");
    }

    #[test]
    fn labels_never_show_credentials() {
        // The config refuses such URLs; a label must not leak one all the same.
        let p = pool(&["http://user:secret@api.internal:3000/v1"]);
        let label = &p.pick().expect("target").label;
        assert_eq!(&**label, "http://***@api.internal:3000/v1");
    }

    #[test]
    fn uri_joins_base_path_request_path_and_query() {
        let p = pool(&["http://api.internal:3000/v1/"]);
        let t = p.pick().expect("target");
        let uri = t.uri("/inbox", Some("page=2")).expect("valid");
        assert_eq!(uri, "http://api.internal:3000/v1/inbox?page=2");
    }
}
