//! Upstream targets of a route: round-robin choice, skipping targets that recently
//! refused connections. Their connections come from [`idle`], the one pool of raw HTTP/1.1
//! keep-alive connections per origin that both engines use, for `http://` and `https://`
//! targets alike ([`stream`]: plain TCP or TLS, [`tls`]: the TLS client configuration).

pub mod idle;
pub mod stream;
pub mod tls;

use crate::config::PoolBudget;
use crate::metrics::Metrics;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use idle::{IdleConns, UpstreamConn};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a target that refused a connection is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// How long either engine waits for a new connection to a target: TCP, and the TLS
/// handshake for an `https://` one.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One upstream base URL.
#[derive(Debug)]
pub struct Target {
    /// The idle connections to this target's origin, shared by every client connection,
    /// route and engine (closed when a reload retires the origin).
    pub idle: Arc<IdleConns>,
    /// The TLS configuration and server name of an `https://` target; `None` for `http://`.
    tls: Option<tls::TlsTarget>,
    scheme: Scheme,
    authority: Authority,
    /// Path of the upstream URL without a trailing slash; empty for `/`.
    base_path: String,
    /// `host:port`, see [`Target::connect_addr`].
    connect_addr: String,
    /// See [`Target::host_header`].
    host_header: String,
    /// The same, made once as a header value (the hyper path sets it).
    host_value: HeaderValue,
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
    fn new(uri: &Uri, pools: &idle::Pools, budget: PoolBudget, links: Links<'_>) -> Option<Self> {
        let scheme = uri.scheme()?.clone();
        let authority = uri.authority()?.clone();
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default_port);
        let host_header = if port == default_port {
            authority.host().to_string()
        } else {
            format!("{}:{port}", authority.host())
        };
        let host_value = HeaderValue::from_str(&host_header).ok()?;
        let tls = match scheme == Scheme::HTTPS {
            true => Some(links.tls.target(authority.host())?),
            false => None,
        };
        let idle = pools.get_or_make(&origin(uri)?, budget, links.metrics);
        Some(Self {
            idle,
            tls,
            connect_addr: format!("{}:{port}", authority.host()),
            host_header,
            host_value,
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

    /// The upstream URI with `pq` as its path and query.
    fn uri_with(&self, pq: PathAndQuery) -> Result<Uri, http::Error> {
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

    /// A new connection to this target, counted active in its origin's pool (TCP, and TLS
    /// for `https://`, within [`CONNECT_TIMEOUT`]).
    pub(crate) async fn connect(&self) -> std::io::Result<UpstreamConn> {
        UpstreamConn::connect(&self.idle, &self.connect_addr, self.tls.as_ref()).await
    }

    /// `host:port` to connect to, with the scheme's default port filled in.
    pub fn connect_addr(&self) -> &str {
        &self.connect_addr
    }

    /// The `Host` header the upstream receives: its host, and its port unless it is the
    /// scheme's default (RFC 9110 §7.2).
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// [`Target::host_header`] as a header value.
    pub fn host_value(&self) -> &HeaderValue {
        &self.host_value
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
    /// Targets with pools of their own under the default budget, counted nowhere, over TLS
    /// trusting the webpki roots (for tests and fuzzing: a gateway's routes use
    /// [`UpstreamPool::drawing_on`]).
    pub fn new(uris: &[Uri]) -> Self {
        let tls = tls::UpstreamTls::with_extra(&[]);
        let links = Links {
            tls: &tls,
            metrics: None,
        };
        Self::build(uris, &idle::Pools::default(), PoolBudget::default(), links)
    }

    /// A route's targets, their connections drawn from `pools` (made there under `budget`,
    /// and counted in `metrics`, for an origin it does not have yet), `https://` ones over
    /// TLS configured by `tls`.
    pub fn drawing_on(
        uris: &[Uri],
        pools: &idle::Pools,
        budget: PoolBudget,
        (tls, metrics): (&tls::UpstreamTls, &Metrics),
    ) -> Self {
        let links = Links {
            tls,
            metrics: Some(metrics),
        };
        Self::build(uris, pools, budget, links)
    }

    fn build(uris: &[Uri], pools: &idle::Pools, budget: PoolBudget, links: Links<'_>) -> Self {
        Self {
            targets: uris
                .iter()
                .filter_map(|uri| Target::new(uri, pools, budget, links))
                .collect(),
            next: AtomicUsize::new(0),
        }
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

/// What targets are made with besides their pool: the TLS configuration for `https://`
/// ones, and where a new pool is counted (if anywhere).
#[derive(Clone, Copy)]
struct Links<'a> {
    tls: &'a tls::UpstreamTls,
    metrics: Option<&'a Metrics>,
}

/// `scheme://host:port` (host in lower case, the scheme's port filled in): what one pool
/// of connections serves, and its `upstream` label in `/metrics`.
pub fn origin(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    Some(format!(
        "{scheme}://{}:{port}",
        authority.host().to_ascii_lowercase()
    ))
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
    fn routes_naming_one_origin_share_its_pool() {
        let pools = idle::Pools::default();
        let (budget, metrics) = (PoolBudget::default(), Metrics::new());
        let tls = tls::UpstreamTls::with_extra(&[]);
        let links = (&*tls, &metrics);
        let uris = |urls: &[&str]| -> Vec<Uri> {
            urls.iter().map(|u| u.parse().expect("test URL")).collect()
        };
        let a = UpstreamPool::drawing_on(&uris(&["http://API.internal/v1"]), &pools, budget, links);
        let b =
            UpstreamPool::drawing_on(&uris(&["http://api.internal:80/v2"]), &pools, budget, links);
        let c = UpstreamPool::drawing_on(&uris(&["http://api.internal:81"]), &pools, budget, links);
        let d =
            UpstreamPool::drawing_on(&uris(&["https://api.internal:81"]), &pools, budget, links);
        let idle = |p: &UpstreamPool| p.pick().expect("target").idle.clone();
        assert!(Arc::ptr_eq(&idle(&a), &idle(&b)), "same origin, one pool");
        assert!(
            !Arc::ptr_eq(&idle(&a), &idle(&c)),
            "another port, another pool"
        );
        assert!(
            !Arc::ptr_eq(&idle(&c), &idle(&d)),
            "another scheme, another pool"
        );
        let text = metrics.render();
        for origin in ["http://api.internal:80", "https://api.internal:81"] {
            let series =
                format!(r#"tollgate_upstream_connections{{state="idle",upstream="{origin}"}} 0"#);
            assert!(text.contains(&series), "{origin}: {text}");
        }
    }

    #[test]
    fn uri_joins_base_path_request_path_and_query() {
        let p = pool(&["http://api.internal:3000/v1/"]);
        let t = p.pick().expect("target");
        let uri = t.uri("/inbox", Some("page=2")).expect("valid");
        assert_eq!(uri, "http://api.internal:3000/v1/inbox?page=2");
    }
}
