//! The proxy: route → authenticate → prepare → forward → finish.
//!
//! Each phase returns `Result<_, GatewayError>`; only [`Gateway::handle`] turns an error
//! into a response (through `error.rs`). The gateway never imports the authorization
//! server: it reaches tokens only through the [`VerifyCache`] in front of a `TokenVerifier`.

pub mod authority;
pub mod fast;
pub mod framing;
pub mod guard;
pub mod headers;
pub mod route;
pub mod upstream;

use crate::access_log::{AccessLog, Notes};
use crate::body::limited::LimitedBody;
use crate::body::{Body, BodyError};
use crate::client_addr::TrustedProxies;
use crate::config::{AuthMode, RouteConfig};
use crate::error::GatewayError;
use crate::metrics::{GuardOutcome, Metrics, RouteKind, RouteMetrics, NO_ROUTE};
use crate::verify::cache::VerifyCache;
use crate::verify::{Principal, Verdict};
use framing::HeadFacts;
use headers::ForwardedFor;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;
use hyper_util::rt::TokioIo;
use route::RouteTable;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upstream::{Target, UpstreamClient, UpstreamPool};

/// What the gateway knows of the client connection a request came on.
pub struct ConnInfo {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// The peer IP as an `X-Forwarded-For` element, rendered once per connection.
    pub client_ip: HeaderValue,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static HeaderValue,
    /// What the connection holds while it is open (its place under `max_connections`, in
    /// `tollgate_open_connections` and in the drain; see `server`). An upgraded WebSocket
    /// outlives the HTTP exchange it began in, so its splice keeps a clone until it ends.
    pub hold: Arc<dyn std::any::Any + Send + Sync>,
    /// Turns true when the drain's deadline has passed: upgraded connections still open
    /// are closed then.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

/// One configured route with everything its requests need, resolved at start-up.
pub struct Route {
    pub config: RouteConfig,
    /// The route's name for the access log.
    name: Arc<str>,
    pool: UpstreamPool,
    /// Its requests may take the fast lane: every target is plain `http://`.
    fast_lane: bool,
    metrics: RouteMetrics,
    /// Its `WWW-Authenticate` values, made once.
    challenges: guard::Challenges,
}

/// The routing and proxying half of the public listener.
pub struct Gateway {
    table: RouteTable,
    routes: Vec<Route>,
    client: UpstreamClient,
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
struct Routed<'a> {
    route: &'a Route,
    path: String,
    /// The request's one authority ([`authority`]), routed on and forwarded as
    /// `X-Forwarded-Host`.
    authority: Option<HeaderValue>,
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
}

impl<'a> GatewaySettings<'a> {
    pub fn of(config: &'a crate::config::Config) -> Self {
        Self {
            routes: &config.routes,
            public_base: &config.oauth.issuer,
            body_timeout: config.server.limits.request_body_timeout,
            trusted_proxies: config.server.trusted_proxies.clone(),
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
        Self::build(settings, verifier, upstream::client(), metrics, log)
    }

    /// A gateway for reloaded settings that forwards through this one's pooled client, so
    /// keep-alive connections to upstreams survive a reload, and writes to its access log.
    pub fn reconfigured(
        &self,
        settings: GatewaySettings<'_>,
        verifier: Arc<VerifyCache>,
        metrics: &Metrics,
    ) -> Self {
        let (client, log) = (self.client.clone(), self.log.clone());
        Self::build(settings, verifier, client, metrics, log)
    }

    fn build(
        settings: GatewaySettings<'_>,
        verifier: Arc<VerifyCache>,
        client: UpstreamClient,
        metrics: &Metrics,
        log: AccessLog,
    ) -> Self {
        let GatewaySettings {
            routes,
            public_base,
            body_timeout,
            trusted_proxies,
        } = settings;
        let table = RouteTable::new(
            routes
                .iter()
                .map(|r| (r.host.as_deref(), r.path_prefix.as_str())),
        );
        let routes = routes
            .iter()
            .map(|r| {
                let pool = UpstreamPool::new(&r.upstreams);
                Route {
                    name: Arc::from(r.name.as_str()),
                    fast_lane: pool.all_plain_http(),
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
            client,
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

    /// The client's address for a request from `peer` ([`crate::client_addr`]).
    pub fn client_addr(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted_proxies.client_addr(peer, headers)
    }

    /// Serves one request end to end; never fails (errors become responses here). What it
    /// learns on the way (route, identity, upstream) goes into `notes`.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        notes: &mut Notes,
    ) -> Response<Body> {
        let started = Instant::now();
        let routed = match self.route(&req) {
            Ok(r) => r,
            Err(e) => {
                let response = e.into_response();
                self.no_route_metrics.finish(response.status(), started);
                notes.route = Some(self.no_route_name.clone());
                return response;
            }
        };
        notes.route = Some(routed.route.name.clone());
        let metrics = &routed.route.metrics;
        let response = match self.serve(&routed, req, conn, request_id, notes).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(outcome) = e.guard_outcome() {
                    metrics.guard(outcome);
                }
                e.into_response()
            }
        };
        metrics.finish(response.status(), started);
        response
    }

    async fn serve(
        &self,
        routed: &Routed<'_>,
        req: Request<Incoming>,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        notes: &mut Notes,
    ) -> Result<Response<Body>, GatewayError> {
        let target = guard::Target {
            method: req.method(),
            scheme: conn.proto,
            authority: routed.authority.as_ref(),
            path: req.uri().path(),
        };
        let principal = self
            .authenticate(routed.route, req.headers(), target)
            .await?;
        if principal.is_some() {
            routed.route.metrics.guard(GuardOutcome::Allowed);
        }
        notes.principal = principal;
        let principal = notes.principal.clone();
        self.forward(routed, req, (conn, request_id), principal.as_deref(), notes)
            .await
    }

    /// Finds the route for the request's authority and normalised path.
    fn route(&self, req: &Request<Incoming>) -> Result<Routed<'_>, GatewayError> {
        let authority = authority::of_request(req)?;
        self.route_for(req.uri().path(), authority)
    }

    /// Finds the route of an origin-form HTTP/1.1 request (all the fast lane takes), whose
    /// authority is its Host header.
    fn route_origin_form(
        &self,
        raw_path: &str,
        headers: &HeaderMap,
    ) -> Result<Routed<'_>, GatewayError> {
        let authority = authority::request_authority(Version::HTTP_11, None, headers)?;
        self.route_for(raw_path, authority)
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

    /// Checks the token (and, for a DPoP-bound one, its proof: [`guard`]) and the route's
    /// audience and scopes; `None` on an open route. `target` is what a proof must match.
    async fn authenticate(
        &self,
        route: &Route,
        headers: &HeaderMap,
        target: guard::Target<'_>,
    ) -> Result<Option<Arc<Principal>>, GatewayError> {
        if route.config.auth == AuthMode::None {
            return Ok(None);
        }
        let challenges = &route.challenges;
        let (token, dpop) = match guard::extract(headers) {
            guard::Credential::Missing => {
                return Err(GatewayError::MissingToken {
                    challenge: challenges.missing.clone(),
                })
            }
            guard::Credential::Malformed => {
                return Err(GatewayError::MalformedToken {
                    challenge: challenges.missing.clone(),
                })
            }
            guard::Credential::Bearer(t) => (t, false),
            guard::Credential::Dpop(t) => (t, true),
        };
        let bad_proof = |reason| GatewayError::InvalidDpopProof {
            challenge: challenges.dpop.proof.clone(),
            reason,
        };
        // The proof first: its checks are pure, and a bad one never costs a verifier call.
        let proof = match dpop {
            true => Some(
                guard::check_proof(headers, &target, token, self.verifier.now_unix())
                    .map_err(bad_proof)?,
            ),
            false => None,
        };
        let principal = match self
            .verifier
            .verify(token, route.config.when_store_down)
            .await
        {
            Ok(Verdict::Active(p)) => p,
            Ok(Verdict::Inactive) => {
                return Err(GatewayError::InvalidToken {
                    challenge: challenges.invalid_for(dpop),
                })
            }
            Err(e) => return Err(GatewayError::VerifierUnavailable(e)),
        };
        guard::admit(route, &principal, proof.as_ref(), dpop)?;
        // Last, once everything else held: a proof is spent only by a request it admits.
        if let Some(proof) = proof {
            let when_down = route.config.when_store_down;
            guard::spend_proof(&self.verifier, &proof, &challenges.dpop.proof, when_down).await?;
        }
        Ok(Some(principal))
    }

    /// Rewrites the request for a target and sends it, retrying another target when a
    /// body-less request could not connect.
    async fn forward(
        &self,
        routed: &Routed<'_>,
        mut req: Request<Incoming>,
        (conn, request_id): (&ConnInfo, &HeaderValue),
        principal: Option<&Principal>,
        notes: &mut Notes,
    ) -> Result<Response<Body>, GatewayError> {
        let (route, path) = (routed.route, routed.path.as_str());
        let upgrade = headers::is_upgrade_request(req.method(), req.version(), req.headers());
        // `is_upgrade_request` takes only a WebSocket handshake: the one switch an upstream
        // may answer with (checked in `send`).
        let websocket = upgrade;
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let forwarded = ForwardedFor {
            client_ip: &conn.client_ip,
            proto: conn.proto,
            host: routed.authority.clone(),
            request_id,
        };
        headers::prepare_request(
            &mut parts.headers,
            forwarded,
            principal.map(|p| &p.headers),
            upgrade,
        );
        parts.version = Version::HTTP_11;
        let body = self.limit_body(route, body)?;
        // A retry needs the request again; only body-less requests on multi-target routes
        // are worth the copy.
        let retry_parts = (route.pool.len() > 1 && http_body::Body::is_end_stream(&body))
            .then(|| clone_parts(&parts));
        let target = route.pool.pick().ok_or(GatewayError::NoRoute)?;
        parts.uri = upstream_uri(target, &parts.uri, path)?;
        let first = self
            .send(
                route,
                target,
                Request::from_parts(parts, body),
                websocket,
                notes,
            )
            .await;
        let mut response = match (first, retry_parts) {
            (Err(GatewayError::UpstreamConnect { .. }), Some(mut parts)) => {
                let target = route.pool.pick().ok_or(GatewayError::NoRoute)?;
                parts.uri = upstream_uri(target, &parts.uri, path)?;
                self.send(
                    route,
                    target,
                    Request::from_parts(parts, Body::empty()),
                    websocket,
                    notes,
                )
                .await?
            }
            (result, _) => result?,
        };
        // `send` let a 101 through only in answer to a WebSocket upgrade.
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::prepare_response(response.headers_mut(), switching);
        if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (hold, closing) = (conn.hold.clone(), conn.closing.clone());
            tokio::spawn(async move {
                // Counted as the open connection it still is until the splice ends.
                let _hold = hold;
                splice_upgraded(client_upgrade, upstream_upgrade, closing).await;
            });
        }
        let pause = route.config.timeout;
        Ok(response.map(|body| Body::Limited(LimitedBody::paced(body, pause))))
    }

    /// Refuses a body declared larger than the route allows before any upstream sees it,
    /// and holds the rest to the route's size limit and the pause limit as it streams.
    fn limit_body(&self, route: &Route, body: Incoming) -> Result<Body, GatewayError> {
        let limit = route.config.max_request_body;
        if http_body::Body::size_hint(&body).lower() > limit {
            return Err(GatewayError::RequestBodyTooLarge { limit });
        }
        Ok(Body::Limited(LimitedBody::new(
            body,
            limit,
            self.body_timeout,
        )))
    }

    /// One attempt at one target, bounded by the route's timeout; the answer's head must
    /// pass the framing rules both engines share (`websocket`: the request asks for a
    /// WebSocket upgrade).
    async fn send(
        &self,
        route: &Route,
        target: &Target,
        mut req: Request<Body>,
        websocket: bool,
        notes: &mut Notes,
    ) -> Result<Response<Incoming>, GatewayError> {
        // hyper's pool takes a connection back once the body is read off it, which a small
        // body already is when the head arrives: a refused answer must poison it.
        let connection = capture_connection(&mut req);
        let started = Instant::now();
        let result = tokio::time::timeout(route.config.timeout, self.client.request(req)).await;
        let took = started.elapsed();
        route.metrics.observe_upstream(took.as_secs_f64());
        notes.upstream = Some(target.label.clone());
        notes.upstream_time = Some(took);
        match result {
            Err(_elapsed) => Err(GatewayError::UpstreamTimeout {
                route: route.config.name.clone(),
                upstream: target.label.to_string(),
                timeout_ms: route.config.timeout.as_millis(),
            }),
            Ok(Ok(response)) => {
                let facts = HeadFacts::of(response.version(), response.headers());
                match framing::check(response.status(), facts, websocket) {
                    Ok(()) => Ok(response),
                    Err(source) => {
                        if let Some(connected) = connection.connection_metadata().as_ref() {
                            connected.poison();
                        }
                        Err(GatewayError::UpstreamFraming {
                            route: route.config.name.clone(),
                            upstream: target.label.to_string(),
                            source,
                        })
                    }
                }
            }
            Ok(Err(source)) => Err(send_error(route, target, source)),
        }
    }
}

/// Why sending to an upstream failed: the client's body first (too large, stalled, cut
/// off: the upstream request was aborted, and it is the client's doing), then the upstream.
fn send_error(
    route: &Route,
    target: &Target,
    source: hyper_util::client::legacy::Error,
) -> GatewayError {
    match BodyError::find(&source) {
        Some(BodyError::TooLarge { limit }) => {
            return GatewayError::RequestBodyTooLarge { limit: *limit }
        }
        Some(BodyError::Stalled { timeout_ms }) => {
            return GatewayError::RequestBodyTimeout {
                timeout_ms: *timeout_ms,
            }
        }
        Some(BodyError::Peer(_)) => {
            return GatewayError::RequestBodyBroken {
                source: source.into(),
            }
        }
        None => {}
    }
    if source.is_connect() {
        target.mark_down();
        GatewayError::UpstreamConnect {
            route: route.config.name.clone(),
            upstream: target.label.to_string(),
            source: source.into(),
        }
    } else {
        GatewayError::UpstreamFailed {
            route: route.config.name.clone(),
            upstream: target.label.to_string(),
            source: source.into(),
        }
    }
}

/// The upstream URI: the request's own path-and-query when nothing changed, else rebuilt.
fn upstream_uri(
    target: &Target,
    original: &http::Uri,
    path: &str,
) -> Result<http::Uri, GatewayError> {
    let uri = match original.path_and_query() {
        // The same rule as the fast lane's: reuse the original when routing changed nothing.
        Some(pq) => match target.path_and_query(pq, path) {
            Cow::Borrowed(_) => target.uri_with(pq.clone()),
            Cow::Owned(rebuilt) => PathAndQuery::try_from(rebuilt)
                .map_err(http::Error::from)
                .and_then(|pq| target.uri_with(pq)),
        },
        None => target.uri(path, None),
    };
    uri.map_err(GatewayError::BadUpstreamRequest)
}

fn clone_parts(parts: &http::request::Parts) -> http::request::Parts {
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .version(parts.version);
    if let Some(h) = builder.headers_mut() {
        *h = parts.headers.clone();
    }
    let (parts, ()) = builder.body(()).unwrap_or_default().into_parts();
    parts
}

/// Copies bytes both ways between an upgraded client and upstream connection.
async fn splice_upgraded(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        _ = closing.wait_for(|closing| *closing) => {
            tracing::debug!("drain deadline passed: closing an upgraded connection");
        }
    }
}
