//! Wiring: builds the shared state from a [`Config`], binds the listeners, and drains
//! them on shutdown. Tests start the real thing through [`App::start`] on port 0.

use crate::body::Body;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreSpec, UserSource, VerifySource};
use crate::directory::file::FileDirectory;
use crate::directory::UserDirectory;
use crate::error::{json_response, GatewayError};
use crate::gateway::{ConnInfo, Gateway};
use crate::metrics::{Metrics, RouteKind, RouteMetrics, OAUTH_ROUTE, VERIFY_ROUTE};
use crate::oauth::OAuthServer;
use crate::readiness::{Readiness, ReadinessCheck};
use crate::server::{self, Handler, Listener};
use crate::store::TokenStore;
use crate::verify::cache::{Staleness, VerifyCache};
use crate::verify::jwks::JwksVerifier;
use crate::verify::own_jwt::OwnJwt;
use crate::verify::{LocalVerifier, RemoteVerifier, TokenVerifier};
use anyhow::Context;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Entry point for starting tollgate.
pub struct App;

/// A started tollgate: its bound addresses and the handle to stop it.
pub struct Running {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The internal listener outlives the drain, so `/readyz` can say "draining".
    internal_shutdown: watch::Sender<bool>,
    internal_task: JoinSet<()>,
}

/// How long the internal listener (introspection, metrics, probes: short requests) gets
/// to finish after the public listeners have drained.
const INTERNAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How often expired codes, tokens and sessions are deleted from the store.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The public listener: the authorization server's paths, and the proxy for the rest.
struct PublicService {
    gateway: Gateway,
    oauth: Arc<OAuthServer>,
    /// Requests to the authorization server count under `route="_oauth"`.
    oauth_metrics: RouteMetrics,
}

/// The internal listener: introspection, metrics and health.
struct InternalService {
    metrics: Arc<Metrics>,
    oauth: Arc<OAuthServer>,
    /// `/verify` counts under `route="_verify"`.
    verify_metrics: RouteMetrics,
    readiness: ReadinessCheck,
}

impl App {
    /// Builds everything the config describes and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Running> {
        let metrics = Arc::new(Metrics::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = crate::store::open(&config.oauth.store)
            .await
            .with_context(|| {
                format!(
                    "{}: [oauth].store = \"{}\"",
                    config.source.display(),
                    config.oauth.store
                )
            })?;
        // It just answered `open`; the probe keeps this true from here on.
        metrics.store_up.set(1);
        for client in &config.clients {
            for grant_type in &client.grant_types {
                metrics.grant_type_enabled(grant_type.as_str());
            }
        }
        let directory = open_directory(&config)?;
        let cache = build_verifier(&config, store.clone(), clock.clone(), metrics.clone())?;
        // The guard hears of revocations from the store, whichever instance made them.
        let sink: Arc<dyn crate::store::RevocationSink> = cache.clone();
        store.count_in(metrics.revocations.clone());
        store.subscribe(&sink);
        let gateway = Gateway::new(
            &config.routes,
            config.server.limits.request_body_timeout,
            cache.clone(),
            &metrics,
        );
        let oauth = Arc::new(OAuthServer::new(
            &config,
            store.clone(),
            directory,
            clock.clone(),
            metrics.clone(),
        ));
        let public = Arc::new(PublicService {
            gateway,
            oauth: oauth.clone(),
            oauth_metrics: metrics.route(OAUTH_ROUTE, RouteKind::Pseudo),
        });
        let (shutdown, stop) = watch::channel(false);
        let (internal_shutdown, internal_stop) = watch::channel(false);
        let internal = Arc::new(InternalService {
            metrics: metrics.clone(),
            oauth,
            verify_metrics: metrics.route(VERIFY_ROUTE, RouteKind::Pseudo),
            readiness: ReadinessCheck::new(stop.clone(), &metrics),
        });

        let public_listener = bind("public", config.server.listen, None).await?;
        let internal_listener = bind("internal", config.server.internal_listen, None).await?;
        let tls_listener = match &config.server.tls {
            Some(tls) => {
                let acceptor = server::tls::acceptor(&tls.cert, &tls.key)
                    .with_context(|| format!("{}: [server.tls]", config.source.display()))?;
                Some(bind("tls", tls.listen, Some(acceptor)).await?)
            }
            None => None,
        };
        let public_addr = public_listener.local_addr()?;
        let internal_addr = internal_listener.local_addr()?;
        let tls_addr = tls_listener
            .as_ref()
            .map(Listener::local_addr)
            .transpose()?;

        metrics.listener_bound(public_listener.name);
        metrics.listener_bound(internal_listener.name);
        if let Some(tls) = &tls_listener {
            metrics.listener_bound(tls.name);
        }

        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(
            public_listener,
            public.clone(),
            metrics.clone(),
            config.server.limits,
            stop.clone(),
        ));
        let mut internal_task = JoinSet::new();
        internal_task.spawn(server::serve(
            internal_listener,
            internal,
            metrics.clone(),
            config.server.limits,
            internal_stop,
        ));
        if let Some(listener) = tls_listener {
            tasks.spawn(server::serve(
                listener,
                public,
                metrics.clone(),
                config.server.limits,
                stop.clone(),
            ));
        }
        tasks.spawn(crate::readiness::probe(
            store.clone(),
            metrics.store_up.clone(),
            stop.clone(),
        ));
        tasks.spawn(sweep(store, clock, stop));
        tracing::info!(%public_addr, %internal_addr, tls_addr = ?tls_addr, "tollgate is listening");
        Ok(Running {
            public_addr,
            internal_addr,
            tls_addr,
            metrics,
            shutdown,
            tasks,
            internal_shutdown,
            internal_task,
        })
    }
}

async fn bind(
    name: &'static str,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<Listener> {
    Listener::bind(name, addr, tls)
        .await
        .with_context(|| format!("cannot listen on {addr} ({name} listener)"))
}

/// The guard's verifier: the local store (and our own JWTs' keys), a remote RFC 7662
/// endpoint, or a third-party issuer's JWKS, behind the cache.
fn build_verifier(
    config: &Config,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Arc<VerifyCache>> {
    let verifier: Arc<dyn TokenVerifier> = match &config.verify.source {
        VerifySource::Remote(remote) => Arc::new(
            RemoteVerifier::new(remote, clock.clone())
                .context("cannot build the introspection client")?,
        ),
        VerifySource::Jwks(jwks) => Arc::new(
            JwksVerifier::new(jwks, clock.clone()).context("cannot build the JWKS client")?,
        ),
        VerifySource::Local => {
            let mut verifier =
                LocalVerifier::new(store.clone(), clock.clone(), config.oauth.issuer.clone());
            if let Some(keys) = config.oauth.token_format.keys() {
                // A store in memory started empty with this process: no revocation in it
                // can predate the feed this verifier hears (see verify::own_jwt).
                let persistent = !matches!(config.oauth.store, StoreSpec::Memory);
                verifier = verifier.with_jwt(OwnJwt::new(
                    keys.clone(),
                    config.oauth.issuer.clone(),
                    config.oauth.access_token_ttl,
                    config.verify.max_stale,
                    clock.clone(),
                    persistent,
                ));
            }
            let verifier = Arc::new(verifier);
            // Answers from our own store age with its revocation feed (see verify::cache).
            let staleness =
                Staleness::new(store, config.verify.max_stale, config.verify.stale_grace);
            return Ok(Arc::new(VerifyCache::with_staleness(
                &config.verify,
                verifier,
                clock,
                metrics,
                staleness,
            )));
        }
    };
    Ok(Arc::new(VerifyCache::new(
        &config.verify,
        verifier,
        clock,
        metrics,
    )))
}

fn open_directory(config: &Config) -> anyhow::Result<Arc<dyn UserDirectory>> {
    match &config.users.source {
        UserSource::File { path, required } => {
            if !required && !path.exists() {
                tracing::info!(path = %path.display(), "no users file: password logins will fail");
                return Ok(Arc::new(FileDirectory::empty()));
            }
            let directory = FileDirectory::load(path)
                .with_context(|| format!("{}: [users].file", config.source.display()))?;
            Ok(Arc::new(directory))
        }
        UserSource::Ldap(ldap) => {
            let directory = crate::directory::ldap::LdapDirectory::new((**ldap).clone())
                .with_context(|| format!("{}: [users.ldap]", config.source.display()))?;
            Ok(Arc::new(directory))
        }
    }
}

/// Deletes expired records every [`SWEEP_EVERY`] until shutdown.
async fn sweep(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = stop.changed() => return,
        }
        match store.sweep(clock.now_unix()).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "swept expired records"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "sweeping the store failed")
            }
        }
    }
}

// === impl Running ===

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), and returns. The
    /// internal listener keeps serving (`/readyz` answers "draining") until the public
    /// listeners have drained, then gets [`INTERNAL_DRAIN`] more, so a whole stop stays
    /// within the public drain plus that (what the systemd unit and Dockerfile allow for).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let _ = self.internal_shutdown.send(true);
        let drained = async { while self.internal_task.join_next().await.is_some() {} };
        if tokio::time::timeout(INTERNAL_DRAIN, drained).await.is_err() {
            tracing::warn!("internal listener drain timed out; closing its connections");
        }
        // Dropping the set aborts whatever is left of it.
    }
}

// === impl PublicService ===

impl Handler for PublicService {
    async fn call(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        if OAuthServer::owns(req.uri().path()) {
            let started = std::time::Instant::now();
            // The same Host rules as the gateway's (which checks its own requests), so the
            // whole listener answers a request with no, two or a bad Host alike.
            if let Err(e) = crate::gateway::authority::of_request(&req) {
                let response = GatewayError::from(e).into_response();
                self.oauth_metrics.finish(response.status(), started);
                return response;
            }
            let secure = conn.proto == crate::gateway::headers::PROTO_HTTPS;
            let peer = conn.client_ip.to_str().unwrap_or("");
            let response = self.oauth.handle(req, secure, peer).await;
            self.oauth_metrics.finish(response.status(), started);
            return response;
        }
        self.gateway.handle(req, conn).await
    }

    const FAST_LANE: bool = true;

    fn fast_gateway(&self, raw_path: &str) -> Option<&Gateway> {
        (!OAuthServer::owns(raw_path)).then_some(&self.gateway)
    }
}

// === impl InternalService ===

impl Handler for InternalService {
    async fn call(&self, req: Request<Incoming>, _conn: &ConnInfo) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut response = Response::new(Body::from(self.metrics.render()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            (_, "/verify") => {
                let started = std::time::Instant::now();
                let response = self.oauth.handle_verify(req).await;
                self.verify_metrics.finish(response.status(), started);
                response
            }
            (&Method::GET, path) if path.starts_with("/demo/mail/") || path == "/demo/mail" => {
                crate::demo::mail(path, req.headers())
            }
            (&Method::GET, "/healthz") => {
                json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_string())
            }
            (&Method::GET, "/readyz") => {
                let readiness = self.readiness.now();
                let status = match readiness {
                    Readiness::Ready => StatusCode::OK,
                    Readiness::Draining | Readiness::StoreUnavailable => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                };
                json_response(status, format!(r#"{{"status":"{}"}}"#, readiness.label()))
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                r#"{"error":"not_found"}"#.to_string(),
            ),
        }
    }
}
