//! The proxy: what a gateway is made of (its routes, their pools, the verifier, the access
//! log), built from the configuration and rebuilt on reload.
//!
//! A request's way through it is [`pipeline`]: route → authenticate → prepare → forward →
//! finish, written once. Two engines call those phases: [`hyper_path`] (anything hyper
//! serves: HTTP/2, bodies, upgrades) and [`fast`] (body-less HTTP/1.1, plain or TLS).
//! Errors become responses in one place, [`error`]. The gateway never imports the
//! authorization server: it reaches tokens only through the [`VerifyCache`] in front of a
//! `TokenVerifier`.

pub mod authority;
pub mod error;
pub mod fast;
pub mod framing;
pub mod guard;
pub mod headers;
pub mod hyper_path;
pub mod pipeline;
pub mod route;
pub mod upstream;

use crate::access_log::AccessLog;
use crate::client_addr::TrustedProxies;
use crate::config::PoolBudget;
use crate::config::{AuthMode, RouteConfig};
use crate::metrics::{Metrics, RouteKind, RouteMetrics, NO_ROUTE};
use crate::verify::cache::VerifyCache;
use error::GatewayError;
use http::HeaderValue;
use route::RouteTable;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use upstream::idle::Pools;
use upstream::tls::UpstreamTls;
use upstream::UpstreamPool;

/// One configured route with everything its requests need, resolved at start-up.
pub struct Route {
    pub config: RouteConfig,
    /// The route's name for the access log.
    name: Arc<str>,
    pool: UpstreamPool,
    metrics: RouteMetrics,
    /// Its `WWW-Authenticate` values, made once.
    challenges: guard::Challenges,
}

/// The routing and proxying half of the public listener.
pub struct Gateway {
    table: RouteTable,
    routes: Vec<Route>,
    /// TLS to `https://` targets (webpki roots and `[server] upstream_ca`).
    tls: Arc<UpstreamTls>,
    /// Every upstream origin's idle connections, carried over by a reload.
    pools: Pools,
    verifier: Arc<VerifyCache>,
    no_route_metrics: RouteMetrics,
    /// `[server].request_body_timeout`: the longest pause in a proxied request body.
    body_timeout: Duration,
    /// `[server] trusted_proxies`: whose `X-Forwarded-For` names the client.
    trusted_proxies: TrustedProxies,
    log: AccessLog,
    /// `_none` for the access log.
    no_route_name: Arc<str>,
}

/// A request that passed routing, with its normalised path.
pub struct Routed<'a> {
    route: &'a Route,
    path: String,
    /// The request's one authority ([`authority`]), routed on and forwarded as
    /// `X-Forwarded-Host`.
    authority: Option<HeaderValue>,
}

// === impl Routed ===

impl<'a> Routed<'a> {
    pub fn route(&self) -> &'a Route {
        self.route
    }

    /// The path the upstream gets: normalised, the prefix stripped if the route says so.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request's one authority (a DPoP proof's `htu` names it).
    pub fn authority(&self) -> Option<&HeaderValue> {
        self.authority.as_ref()
    }
}

/// What a gateway is made of that the configuration decides (and a reload may change).
pub struct GatewaySettings<'a> {
    pub routes: &'a [RouteConfig],
    /// `[oauth] issuer`, where the routes' RFC 9728 metadata is served.
    pub public_base: &'a str,
    /// `[server] request_body_timeout`: the longest pause allowed in a proxied request body.
    pub body_timeout: Duration,
    /// `[server] trusted_proxies`.
    pub trusted_proxies: TrustedProxies,
    /// `[server] upstream_max_idle` and `upstream_idle_timeout`.
    pub pool_budget: PoolBudget,
    /// `[server] upstream_ca`: CA certificates trusted for `https://` upstreams besides the
    /// webpki roots.
    pub upstream_ca: &'a [rustls::pki_types::CertificateDer<'static>],
}

impl<'a> GatewaySettings<'a> {
    pub fn of(config: &'a crate::config::Config) -> Self {
        Self {
            routes: &config.routes,
            public_base: &config.oauth.issuer,
            body_timeout: config.server.limits.request_body_timeout,
            trusted_proxies: config.server.trusted_proxies.clone(),
            pool_budget: config.server.upstream_pool,
            upstream_ca: &config.server.upstream_ca,
        }
    }
}

impl Gateway {
    /// A gateway that checks tokens with `verifier` and writes its requests to `log`.
    pub fn new(
        settings: GatewaySettings<'_>,
        verifier: Arc<VerifyCache>,
        metrics: &Metrics,
        log: AccessLog,
    ) -> Self {
        let tls = UpstreamTls::with_extra(settings.upstream_ca);
        Self::build(settings, verifier, (tls, Pools::default()), metrics, log)
    }

    /// A gateway for reloaded settings that keeps this one's upstream connections (the
    /// pools of the origins it still names, under the new budget), so keep-alive
    /// connections survive a reload, and writes to its access log. New TLS connections
    /// trust the reloaded `upstream_ca`; the TLS configuration (and its session cache) is
    /// kept when that names the same certificates.
    pub fn reconfigured(
        &self,
        settings: GatewaySettings<'_>,
        verifier: Arc<VerifyCache>,
        metrics: &Metrics,
    ) -> Self {
        let origins: Vec<String> = settings
            .routes
            .iter()
            .flat_map(|r| r.upstreams.iter().filter_map(upstream::origin))
            .collect();
        let pools = self.pools.carry_over(&origins, metrics);
        let tls = match self.tls.extra() == settings.upstream_ca {
            true => self.tls.clone(),
            false => UpstreamTls::with_extra(settings.upstream_ca),
        };
        Self::build(settings, verifier, (tls, pools), metrics, self.log.clone())
    }

    fn build(
        settings: GatewaySettings<'_>,
        verifier: Arc<VerifyCache>,
        (tls, pools): (Arc<UpstreamTls>, Pools),
        metrics: &Metrics,
        log: AccessLog,
    ) -> Self {
        let GatewaySettings {
            routes,
            public_base,
            body_timeout,
            trusted_proxies,
            pool_budget,
            upstream_ca: _,
        } = settings;
        let table = RouteTable::new(
            routes
                .iter()
                .map(|r| (r.host.as_deref(), r.path_prefix.as_str())),
        );
        let routes = routes
            .iter()
            .map(|r| {
                let links = (&*tls, metrics);
                let pool = UpstreamPool::drawing_on(&r.upstreams, &pools, pool_budget, links);
                Route {
                    name: Arc::from(r.name.as_str()),
                    pool,
                    metrics: metrics.route(
                        &r.name,
                        match r.auth {
                            AuthMode::Bearer => RouteKind::Bearer,
                            AuthMode::None => RouteKind::Open,
                        },
                    ),
                    challenges: guard::Challenges::new(
                        &r.scopes,
                        &crate::oauth::resource::metadata_url(public_base, &r.path_prefix),
                    ),
                    config: r.clone(),
                }
            })
            .collect();
        Self {
            table,
            routes,
            tls,
            pools,
            verifier,
            no_route_metrics: metrics.route(NO_ROUTE, RouteKind::Pseudo),
            body_timeout,
            trusted_proxies,
            log,
            no_route_name: Arc::from(NO_ROUTE),
        }
    }

    /// The verifier (and cache) the guard asks; a reload keeps it when `[verify]` is unchanged.
    pub fn verifier(&self) -> &Arc<VerifyCache> {
        &self.verifier
    }

    /// The access log this gateway's requests are written to.
    pub fn access_log(&self) -> &AccessLog {
        &self.log
    }

    /// Serves one request on the hyper path ([`hyper_path::handle`]); never fails.
    pub async fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        conn: &crate::server::ConnInfo,
        (request_id, started): (&HeaderValue, std::time::Instant),
        notes: &mut crate::access_log::Notes,
    ) -> http::Response<crate::body::Body> {
        hyper_path::handle(self, req, conn, (request_id, started), notes).await
    }

    /// `[server] request_body_timeout`: the longest pause in a proxied request body.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// The client's address for a request from `peer` ([`crate::client_addr`]).
    pub fn client_addr(&self, peer: IpAddr, headers: &impl headers::HeaderView) -> IpAddr {
        self.trusted_proxies.client_addr(peer, headers)
    }

    /// Finds the route for a raw request path and the request's (checked) authority.
    fn route_for(
        &self,
        raw_path: &str,
        authority: Option<HeaderValue>,
    ) -> Result<Routed<'_>, GatewayError> {
        let path = route::normalise_path(raw_path)?;
        let host = match &authority {
            Some(a) if self.table.needs_host() => a.to_str().ok().map(route::normalise_host),
            _ => None,
        };
        let index = self
            .table
            .find(host.as_deref(), &path)
            .ok_or(GatewayError::NoRoute)?;
        let route = &self.routes[index];
        let forwarded = if route.config.strip_prefix {
            route::strip_prefix(&route.config.path_prefix, &path).to_string()
        } else {
            path.into_owned()
        };
        Ok(Routed {
            route,
            path: forwarded,
            authority,
        })
    }
}
