//! The gateway's phases, written once; both engines call them, as pingora's `ProxyHttp`
//! phases and linkerd2-proxy's one rescue are written once for every protocol:
//!
//! 1. **route** ([`Exchange::route`]): the request's one authority and normalised path pick
//!    a route (404, or 400 for a path or authority that cannot be trusted);
//! 2. **authenticate** ([`Exchange::authenticate`]): the RFC 6750 guard on a bearer route;
//! 3. **prepare** ([`Exchange::prepare`]): the upstream request's headers, a [`Rewrite`]
//!    ([`headers::prepare_request`]'s rule) that the hyper path applies to its header map and
//!    the fast lane writes straight into the upstream head;
//! 4. **forward** ([`Exchange::forward`]): a target from the route's pool, each attempt
//!    bounded by the route's `timeout`, one more attempt at another target when a body-less
//!    request could not connect; a failed attempt becomes a [`GatewayError`] here and only
//!    here;
//! 5. **filter the response**: [`framing::check`](super::framing::check) and
//!    [`headers::response_drops`], the one framing rule and the one hop-by-hop rule, which
//!    each engine applies to its own view of the answer's head;
//! 6. **finish**: [`Exchange::fail`] (the one rescue: an error becomes its response, a guard
//!    refusal is counted), [`Exchange::finish`] (the route's metrics) and the access log
//!    ([`Gateway::begin_entry`], [`Gateway::record`]).
//!
//! An engine brings only what is its own: how it reads the request, how one attempt reaches
//! one target ([`Upstream`]), and how it writes the answer back.

use super::error::{GatewayError, UpstreamCause};
use super::framing::FramingError;
use super::headers::{self, ForwardedFor, HeaderView};
use super::upstream::Target;
use super::{authority::AuthorityError, guard, Gateway, Route, Routed};
use crate::access_log::{Entry, Notes};
use crate::body::Body;
use crate::config::AuthMode;
use crate::metrics::{GuardOutcome, RouteMetrics};
use crate::server::ConnInfo;
use crate::verify::{Principal, Verdict};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

/// How an engine sends a prepared request to one target (the forward phase's own part).
pub trait Upstream {
    /// The answer with its head checked ([`framing::check`](super::framing::check)).
    type Response;

    /// The request has no body, so it can be sent again after a connect failure.
    fn bodyless(&self) -> bool;

    /// One try at `target` (another may follow if this one cannot connect: it must leave
    /// the request to be sent again). The pipeline bounds it by the route's timeout.
    fn attempt(
        &mut self,
        target: &Target,
    ) -> impl Future<Output = Result<Self::Response, AttemptError>> + Send;
}

/// Why one attempt failed, as the engine saw it; [`Exchange::forward`] classifies it.
#[derive(Debug)]
pub enum AttemptError {
    /// No connection to the target: it is marked down, and a body-less request may go to
    /// another.
    Connect(UpstreamCause),
    /// The target failed after the connection was made.
    Failed(UpstreamCause),
    /// Its response head broke the framing rules both engines share.
    Refused(FramingError),
    /// Not the target's doing (the client's body failed, or the request could not be
    /// built): passed on as it is.
    Request(GatewayError),
}

/// One request's way through the phases, and what it records on the way: the route's
/// metrics, and the notes the access log gets.
pub struct Exchange<'g> {
    gateway: &'g Gateway,
    started: Instant,
    /// The route's, once routed; the `_none` pseudo-route's before.
    metrics: &'g RouteMetrics,
    notes: Notes,
}

// === impl Gateway ===

impl Gateway {
    /// A request, whose head was taken at `started`, begins its way through the phases.
    pub fn begin(&self, started: Instant) -> Exchange<'_> {
        Exchange {
            gateway: self,
            started,
            metrics: &self.no_route_metrics,
            notes: Notes::default(),
        }
    }

    /// The access-log entry of a request (from the TCP peer `peer`), when the log is on.
    pub fn begin_entry(
        &self,
        (method, version, path): (&Method, Version, &str),
        headers: &impl HeaderView,
        peer: IpAddr,
        request_id: &HeaderValue,
    ) -> Option<Entry> {
        self.log.enabled().then(|| {
            let client_addr = self.client_addr(peer, headers);
            Entry::begin(method, version, path, headers, client_addr, request_id)
        })
    }

    /// Hands a request whose response has been sent (`sent` body bytes) to the access log.
    pub fn record(
        &self,
        entry: Option<Entry>,
        notes: Notes,
        (status, sent): (StatusCode, u64),
        started: Instant,
    ) {
        if let Some(mut entry) = entry {
            entry.note(notes);
            entry.finish(status, sent, started);
            self.log.record(entry);
        }
    }
}

// === impl Exchange ===

impl<'g> Exchange<'g> {
    /// Route: the route for the request's raw path and its authority (as the engine found
    /// it, [`super::authority`]).
    pub fn route(
        &mut self,
        raw_path: &str,
        authority: Result<Option<HeaderValue>, AuthorityError>,
    ) -> Result<Routed<'g>, GatewayError> {
        let gateway = self.gateway;
        match authority
            .map_err(GatewayError::from)
            .and_then(|authority| gateway.route_for(raw_path, authority))
        {
            Ok(routed) => {
                self.notes.route = Some(routed.route.name.clone());
                self.metrics = &routed.route.metrics;
                Ok(routed)
            }
            Err(e) => {
                self.notes.route = Some(gateway.no_route_name.clone());
                Err(e)
            }
        }
    }

    /// Authenticate: checks the bearer token and the route's audience and scopes; the
    /// principal (none on an open route) is kept for the later phases and the log.
    pub async fn authenticate(
        &mut self,
        route: &Route,
        headers: &impl HeaderView,
        target: guard::Target<'_>,
    ) -> Result<(), GatewayError> {
        if route.config.auth == AuthMode::None {
            return Ok(());
        }
        let principal = self.gateway.verified(route, headers, target).await?;
        self.metrics.guard(GuardOutcome::Allowed);
        self.notes.principal = Some(principal);
        Ok(())
    }

    /// Prepare: how the client's request headers are rewritten for the upstream
    /// (`upgrade`: a WebSocket handshake goes on).
    pub fn prepare<'a>(
        &self,
        routed: &Routed<'_>,
        (conn, request_id): (&'a ConnInfo, &'a HeaderValue),
        upgrade: bool,
    ) -> Rewrite<'a> {
        Rewrite {
            forwarded: ForwardedFor {
                client_ip: &conn.client_ip,
                proto: conn.proto,
                host: routed.authority.clone(),
                request_id,
            },
            principal: self.notes.principal.clone(),
            upgrade,
        }
    }

    /// Forward: sends the prepared request to a target of the route, and once more to
    /// another when a body-less request could not connect; each attempt is bounded by the
    /// route's timeout and counted in its upstream histogram.
    pub async fn forward<U: Upstream>(
        &mut self,
        route: &Route,
        upstream: &mut U,
    ) -> Result<U::Response, GatewayError> {
        let attempts = if upstream.bodyless() && route.pool.len() > 1 {
            2
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let target = route.pool.pick().ok_or(GatewayError::NoRoute)?;
            let again = attempt < attempts;
            let started = Instant::now();
            let result = tokio::time::timeout(route.config.timeout, upstream.attempt(target)).await;
            let took = started.elapsed();
            route.metrics.observe_upstream(took.as_secs_f64());
            self.notes.upstream = Some(target.label.clone());
            self.notes.upstream_time = Some(took);
            let result = match result {
                Ok(attempted) => attempted.map_err(|e| classify(route, target, e)),
                Err(_elapsed) => Err(GatewayError::UpstreamTimeout {
                    route: route.config.name.clone(),
                    upstream: target.label.to_string(),
                    timeout_ms: route.config.timeout.as_millis(),
                }),
            };
            match result {
                Err(GatewayError::UpstreamConnect { .. }) if again => attempt += 1,
                result => return result,
            }
        }
    }

    /// The one rescue: the error's response, a guard refusal counted.
    pub fn fail(&self, e: GatewayError) -> Response<Body> {
        if let Some(outcome) = e.guard_outcome() {
            self.metrics.guard(outcome);
        }
        e.into_response()
    }

    /// Finish: counts the request under its route once its response head is ready (the
    /// body streams after), and gives the notes for its access-log line.
    pub fn finish(self, status: StatusCode) -> Notes {
        self.metrics.finish(status, self.started);
        self.notes
    }
}

/// The prepare phase's outcome: one request's header rewrite ([`headers::prepare_request`]'s
/// rule), which the hyper path applies to its header map and the fast lane writes, with the
/// client's headers, straight into the upstream head.
pub struct Rewrite<'a> {
    forwarded: ForwardedFor<'a>,
    /// Whose identity headers the upstream gets (none on an open route).
    principal: Option<Principal>,
    upgrade: bool,
}

impl Rewrite<'_> {
    /// Rewrites `headers` in place for the upstream.
    pub fn apply(self, headers: &mut HeaderMap) {
        let identity = self.principal.as_deref().map(|p| &p.headers);
        headers::prepare_request(headers, self.forwarded, identity, self.upgrade);
    }

    /// Writes the upstream's header lines for the client's `headers` (what [`Self::apply`]
    /// would leave in them) to `out`.
    pub fn encode(&self, headers: &impl HeaderView, out: &mut Vec<u8>) {
        let identity = self.principal.as_deref().map(|p| &p.headers);
        headers::encode_prepared_request(headers, &self.forwarded, identity, self.upgrade, out);
    }
}

/// What a failed attempt means for the client, the target and the log.
fn classify(route: &Route, target: &Target, e: AttemptError) -> GatewayError {
    let (route_name, upstream) = (route.config.name.clone(), target.label.to_string());
    match e {
        AttemptError::Connect(source) => {
            target.mark_down();
            GatewayError::UpstreamConnect {
                route: route_name,
                upstream,
                source,
            }
        }
        AttemptError::Failed(source) => GatewayError::UpstreamFailed {
            route: route_name,
            upstream,
            source,
        },
        AttemptError::Refused(source) => GatewayError::UpstreamFraming {
            route: route_name,
            upstream,
            source,
        },
        AttemptError::Request(e) => e,
    }
}

// === impl Gateway (phases' helpers) ===

impl Gateway {
    /// The guard's verdict on a bearer route: the principal, or why the request is refused.
    /// A `DPoP` token comes with its proof (RFC 9449), checked first (its checks are pure, and
    /// a bad one never costs a verifier call) and spent last, by a request it admits.
    async fn verified(
        &self,
        route: &Route,
        headers: &impl HeaderView,
        target: guard::Target<'_>,
    ) -> Result<Principal, GatewayError> {
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
        // The binding, the audience and the scopes are checked on every request, cached
        // verdict or not: a verdict is cached per token, and one token may be sent to any
        // route.
        guard::admit(route, &principal, proof.as_ref(), dpop)?;
        if let Some(proof) = proof {
            let when_down = route.config.when_store_down;
            guard::spend_proof(&self.verifier, &proof, &challenges.dpop.proof, when_down).await?;
        }
        Ok(principal)
    }
}
