//! Prometheus metrics with the contract's names and labels, and the `/metrics` text.
//!
//! Label handles are resolved once (at start-up, or once per route and status code) so
//! the request path only bumps atomics; it never formats a label or takes a map lock.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";
/// Route label for the authorization server's own endpoints.
pub const OAUTH_ROUTE: &str = "_oauth";
/// Route label for `/verify` (RFC 7662) on the internal listener.
pub const VERIFY_ROUTE: &str = "_verify";

/// `tollgate_logins_total`'s `result` values, created at zero.
const LOGIN_RESULTS: [&str; 4] = ["success", "failure", "throttled", "unavailable"];
/// `tollgate_login_bans_total`'s `kind` values, created at zero.
const BAN_KINDS: [&str; 2] = ["user", "ip"];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric family the process exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    guard_decisions: IntCounterVec,
    pub cache: CacheMetrics,
    introspection_duration: HistogramVec,
    pub tokens_issued: IntCounterVec,
    pub token_endpoint_errors: IntCounterVec,
    pub logins: IntCounterVec,
    /// `tollgate_login_bans_total{kind="user"|"ip"}`: bans imposed by brute-force protection.
    pub login_bans: IntCounterVec,
    open_connections: IntGaugeVec,
    /// `tollgate_upstream_connections{upstream, state="idle"|"active"}`: each upstream
    /// origin's pooled connections.
    upstream_connections: IntGaugeVec,
    /// How revocations reach this instance (handed to the token store's feed).
    pub revocations: RevocationMetrics,
    /// `tollgate_store_up`: 1 while the token store answers (set by the readiness probe).
    pub store_up: IntGauge,
    /// `tollgate_config_reloads_total{result}`: SIGHUP reloads applied and refused.
    pub config_reloads: ReloadMetrics,
    /// `tollgate_access_log_dropped_total`: access-log entries dropped because the writer
    /// was too far behind (requests never wait for it).
    pub access_log_dropped: IntCounter,
}

/// One upstream origin's `tollgate_upstream_connections` series: connections parked in its
/// pool (idle) and lent to a request (active).
#[derive(Clone)]
pub struct PoolGauges {
    pub idle: IntGauge,
    pub active: IntGauge,
}

impl PoolGauges {
    /// Gauges that count but are not exported (a pool `/metrics` does not show).
    pub fn detached() -> Self {
        let gauge = || IntGauge::new("detached", "not exported").expect("valid gauge name");
        PoolGauges {
            idle: gauge(),
            active: gauge(),
        }
    }
}

/// `tollgate_config_reloads_total{result="success"|"failure"}`, both present from start.
#[derive(Clone)]
pub struct ReloadMetrics {
    pub success: IntCounter,
    pub failure: IntCounter,
}

/// `tollgate_revocations_total{source}`, `tollgate_revocation_lag_seconds` and
/// `tollgate_revocation_stream_up`: the token store's revocation feed.
#[derive(Clone)]
pub struct RevocationMetrics {
    /// Tokens revoked by this instance.
    pub local: IntCounter,
    /// Tokens revoked by other instances, read from the store's stream.
    pub stream: IntCounter,
    /// Time from a revocation at another instance to its arrival here.
    pub lag: Histogram,
    /// 1 while this instance is reading the revocation stream.
    pub stream_up: IntGauge,
}

/// `tollgate_verify_cache_total` by result.
pub struct CacheMetrics {
    pub hit: IntCounter,
    pub miss: IntCounter,
    pub negative_hit: IntCounter,
    pub coalesced: IntCounter,
    /// `tollgate_verify_stale_total{result}`: cached answers that needed a re-check at the
    /// store (the revocation feed silent past `max_stale`, or older than `cache_ttl` but
    /// kept for `stale_grace`): re-checked (`revalidated`), used without one because the
    /// store was unreachable (`served`), or refused for that reason (`refused`).
    pub stale_revalidated: IntCounter,
    pub stale_served: IntCounter,
    pub stale_refused: IntCounter,
}

/// The guard's possible decisions, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardOutcome {
    Allowed,
    Missing,
    Invalid,
    InsufficientScope,
    VerifierError,
}

impl GuardOutcome {
    const ALL: [GuardOutcome; 5] = [
        Self::Allowed,
        Self::Missing,
        Self::Invalid,
        Self::InsufficientScope,
        Self::VerifierError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::InsufficientScope => "insufficient_scope",
            Self::VerifierError => "verifier_error",
        }
    }
}

/// The handles one route (or pseudo-route) uses on every request.
///
/// Series that can never move are not created: pseudo-routes have no upstream, and only
/// `bearer` routes have a guard. Those that can move exist (at zero) from the start.
pub struct RouteMetrics {
    name: String,
    requests: IntCounterVec,
    by_status: Box<[OnceLock<IntCounter>]>,
    pub duration: Histogram,
    upstream_duration: Option<Histogram>,
    guard: Option<[IntCounter; 5]>,
}

/// What a route's series are for: which of them can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A `[[routes]]` entry with `auth = "bearer"`: upstream and guard decisions.
    Bearer,
    /// A `[[routes]]` entry with `auth = "none"`: upstream, no guard.
    Open,
    /// `_none`, `_oauth`, `_verify`: answered by tollgate itself.
    Pseudo,
}

impl RouteMetrics {
    /// Counts one finished request; the status's handle is resolved on its first use.
    pub fn count_status(&self, status: http::StatusCode) {
        let code = status.as_u16();
        let slot = usize::from(code.saturating_sub(100)).min(self.by_status.len() - 1);
        self.by_status[slot]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[&self.name, status.as_str()])
            })
            .inc();
    }

    /// Counts a finished request (its response head is ready) and its duration.
    pub fn finish(&self, status: http::StatusCode, started: std::time::Instant) {
        self.count_status(status);
        self.duration.observe(started.elapsed().as_secs_f64());
    }

    pub fn guard(&self, outcome: GuardOutcome) {
        if let Some(guard) = &self.guard {
            guard[outcome as usize].inc();
        }
    }

    /// Records how long the upstream took to send its response head.
    pub fn observe_upstream(&self, seconds: f64) {
        if let Some(h) = &self.upstream_duration {
            h.observe(seconds);
        }
    }
}

/// A connection gauge for one listener, decremented when dropped.
pub struct ConnectionGuard(IntGauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests answered, by route and status",
            ),
            &["route", "status"],
        )
        .expect("static metric definition is valid");
        let request_duration = histogram(
            "tollgate_request_duration_seconds",
            "Time from request head to response head",
            &["route"],
        );
        let upstream_duration = histogram(
            "tollgate_upstream_duration_seconds",
            "Time the upstream took to send response headers",
            &["route"],
        );
        let guard_decisions = counter(
            "tollgate_guard_decisions_total",
            "Bearer guard decisions",
            &["route", "outcome"],
        );
        let cache_vec = counter(
            "tollgate_verify_cache_total",
            "Token verification cache lookups",
            &["result"],
        );
        let stale_vec = counter(
            "tollgate_verify_stale_total",
            "Cached verification answers that needed a re-check at the token store",
            &["result"],
        );
        let cache = CacheMetrics {
            hit: cache_vec.with_label_values(&["hit"]),
            miss: cache_vec.with_label_values(&["miss"]),
            negative_hit: cache_vec.with_label_values(&["negative_hit"]),
            coalesced: cache_vec.with_label_values(&["coalesced"]),
            stale_revalidated: stale_vec.with_label_values(&["revalidated"]),
            stale_served: stale_vec.with_label_values(&["served"]),
            stale_refused: stale_vec.with_label_values(&["refused"]),
        };
        let introspection_duration = histogram(
            "tollgate_introspection_duration_seconds",
            "Time to verify a token that was not cached",
            &["verifier"],
        );
        let tokens_issued = counter(
            "tollgate_tokens_issued_total",
            "Access tokens issued",
            &["grant_type"],
        );
        let token_endpoint_errors = counter(
            "tollgate_token_endpoint_errors_total",
            "Errors answered by the token endpoint",
            &["error"],
        );
        let logins = counter("tollgate_logins_total", "Login attempts", &["result"]);
        for result in LOGIN_RESULTS {
            logins.with_label_values(&[result]);
        }
        let login_bans = counter(
            "tollgate_login_bans_total",
            "Bans imposed after repeated login failures",
            &["kind"],
        );
        for kind in BAN_KINDS {
            login_bans.with_label_values(&[kind]);
        }
        let open_connections = IntGaugeVec::new(
            Opts::new("tollgate_open_connections", "Open client connections"),
            &["listener"],
        )
        .expect("static metric definition is valid");
        let upstream_connections = IntGaugeVec::new(
            Opts::new(
                "tollgate_upstream_connections",
                "Pooled connections to an upstream origin: idle, or active (lent to a request)",
            ),
            &["upstream", "state"],
        )
        .expect("static metric definition is valid");
        let revocation_sources = counter(
            "tollgate_revocations_total",
            "Revoked tokens this instance's guard was told of, by where the news came from",
            &["source"],
        );
        let revocation_lag = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_revocation_lag_seconds",
                "Time from a revocation at another instance to its arrival here",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("static metric definition is valid");
        let stream_up = IntGauge::new(
            "tollgate_revocation_stream_up",
            "1 while this instance is reading the revocation stream",
        )
        .expect("static metric definition is valid");
        let revocations = RevocationMetrics {
            local: revocation_sources.with_label_values(&["local"]),
            stream: revocation_sources.with_label_values(&["stream"]),
            lag: revocation_lag.clone(),
            stream_up: stream_up.clone(),
        };
        let store_up = IntGauge::new("tollgate_store_up", "1 while the token store answers")
            .expect("static metric definition is valid");
        let reloads = counter(
            "tollgate_config_reloads_total",
            "Configuration reloads (SIGHUP), applied (success) or refused (failure)",
            &["result"],
        );
        let config_reloads = ReloadMetrics {
            success: reloads.with_label_values(&["success"]),
            failure: reloads.with_label_values(&["failure"]),
        };
        let build_info = IntGaugeVec::new(
            Opts::new("tollgate_build_info", "Always 1; the version in a label"),
            &["version"],
        )
        .expect("static metric definition is valid");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let access_log_dropped = IntCounter::new(
            "tollgate_access_log_dropped_total",
            "Access-log entries dropped because the log writer was too far behind",
        )
        .expect("static metric definition is valid");
        let collectors: [Box<dyn prometheus::core::Collector>; 20] = [
            Box::new(access_log_dropped.clone()),
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(guard_decisions.clone()),
            Box::new(cache_vec),
            Box::new(stale_vec),
            Box::new(introspection_duration.clone()),
            Box::new(tokens_issued.clone()),
            Box::new(token_endpoint_errors.clone()),
            Box::new(logins.clone()),
            Box::new(login_bans.clone()),
            Box::new(open_connections.clone()),
            Box::new(upstream_connections.clone()),
            Box::new(revocation_sources),
            Box::new(revocation_lag),
            Box::new(stream_up),
            Box::new(store_up.clone()),
            Box::new(build_info),
            Box::new(reloads),
        ];
        for c in collectors {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux only).
        #[cfg(target_os = "linux")]
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "cannot register the process metrics");
        }
        Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            guard_decisions,
            cache,
            introspection_duration,
            tokens_issued,
            token_endpoint_errors,
            logins,
            login_bans,
            open_connections,
            upstream_connections,
            revocations,
            store_up,
            config_reloads,
            access_log_dropped,
        }
    }

    /// Resolves the per-request handles of one route (creating its series that can move).
    pub fn route(&self, name: &str, kind: RouteKind) -> RouteMetrics {
        let upstream = matches!(kind, RouteKind::Bearer | RouteKind::Open);
        RouteMetrics {
            name: name.to_string(),
            requests: self.requests.clone(),
            by_status: (100..=600).map(|_| OnceLock::new()).collect(),
            duration: self.request_duration.with_label_values(&[name]),
            upstream_duration: upstream.then(|| self.upstream_duration.with_label_values(&[name])),
            guard: (kind == RouteKind::Bearer).then(|| {
                GuardOutcome::ALL
                    .map(|o| self.guard_decisions.with_label_values(&[name, o.label()]))
            }),
        }
    }

    /// Creates `tollgate_tokens_issued_total{grant_type}` at zero for a grant type a
    /// client is registered for.
    pub fn grant_type_enabled(&self, grant_type: &str) {
        self.tokens_issued.with_label_values(&[grant_type]);
    }

    /// Creates `tollgate_open_connections{listener}` at zero for a listener that is bound.
    pub fn listener_bound(&self, listener: &str) {
        self.open_connections.with_label_values(&[listener]);
    }

    /// Creates `tollgate_upstream_connections{upstream=origin}` at zero in both states and
    /// gives their handles to the origin's pool.
    pub fn upstream_pool(&self, origin: &str) -> PoolGauges {
        PoolGauges {
            idle: self
                .upstream_connections
                .with_label_values(&[origin, "idle"]),
            active: self
                .upstream_connections
                .with_label_values(&[origin, "active"]),
        }
    }

    /// Removes a retired origin's series (a reload dropped every route to it).
    pub fn upstream_pool_retired(&self, origin: &str) {
        for state in ["idle", "active"] {
            let _ = self
                .upstream_connections
                .remove_label_values(&[origin, state]);
        }
    }

    pub fn introspection(&self, verifier: &str) -> Histogram {
        self.introspection_duration.with_label_values(&[verifier])
    }

    /// Counts an open connection on `listener` until the returned guard is dropped.
    pub fn connection_opened(&self, listener: &str) -> ConnectionGuard {
        let gauge = self.open_connections.with_label_values(&[listener]);
        gauge.inc();
        ConnectionGuard(gauge)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("static metric definition is valid")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition is valid")
}
