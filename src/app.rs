//! Wiring: builds the shared state from a [`Config`], binds the listeners, and drains
//! them on shutdown. Tests start the real thing through [`App::start`] on port 0.
//!
//! What requests read of the config is one swappable snapshot ([`live`]); [`reload`]
//! replaces it on SIGHUP ([`Running::reload`]).

pub mod live;
pub mod reload;

use crate::access_log::{AccessLog, Notes};
use crate::body::logged::LoggedBody;
use crate::body::Body;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::json_response;
use crate::gateway::error::GatewayError;
use crate::gateway::Gateway;
use crate::metrics::{Metrics, RouteKind, RouteMetrics, OAUTH_ROUTE, VERIFY_ROUTE};
use crate::oauth::OAuthServer;
use crate::readiness::{Readiness, ReadinessCheck};
use crate::server::tls::CertResolver;
use crate::server::{self, ConnInfo, Exit, FastLane, Handler, Listener, NoFastLane};
use crate::store::TokenStore;
use anyhow::Context;
use arc_swap::ArcSwap;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
pub use live::CacheFate;
use live::{Live, LiveConfig, Shared};
pub use reload::{Applied, ReloadError, ReloadHook, Reloader};
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
    /// The access log: the reload calls [`AccessLog::reopen`] (or [`AccessLog::apply`]).
    pub access_log: AccessLog,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The internal listener outlives the drain, so `/readyz` can say "draining".
    internal_shutdown: watch::Sender<bool>,
    internal_task: JoinSet<()>,
    reloader: Arc<Reloader>,
}

/// How long the internal listener (introspection, metrics, probes: short requests) gets
/// to finish after the public listeners have drained.
const INTERNAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How often expired codes, tokens and sessions are deleted from the store.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The public listener: the authorization server's paths, and the proxy for the rest.
struct PublicService {
    /// The gateway and the authorization server of the current configuration.
    live: LiveConfig,
    /// Requests to the authorization server count under `route="_oauth"`.
    oauth_metrics: RouteMetrics,
    /// `_oauth`, the route name of the authorization server's lines in the access log.
    oauth_route: Arc<str>,
}

/// The internal listener: introspection, metrics and health.
struct InternalService {
    metrics: Arc<Metrics>,
    live: LiveConfig,
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
        let access_log = AccessLog::start(&config.log, metrics.access_log_dropped.clone())
            .with_context(|| format!("{}: [log].access", config.source.display()))?;
        store.count_in(metrics.revocations.clone());
        let shared = Shared {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            access_log: access_log.clone(),
            proof_ids: Arc::new(crate::dpop::ProofIds::for_store(store.clone())),
        };
        let first = Live::first(&config, &shared).map_err(|p| config.refuse(vec![p]))?;
        let live: LiveConfig = Arc::new(ArcSwap::from_pointee(first));
        let public = Arc::new(PublicService {
            live: live.clone(),
            oauth_metrics: metrics.route(OAUTH_ROUTE, RouteKind::Pseudo),
            oauth_route: Arc::from(OAUTH_ROUTE),
        });
        let (shutdown, stop) = watch::channel(false);
        let (internal_shutdown, internal_stop) = watch::channel(false);
        let internal = Arc::new(InternalService {
            metrics: metrics.clone(),
            live: live.clone(),
            verify_metrics: metrics.route(VERIFY_ROUTE, RouteKind::Pseudo),
            readiness: ReadinessCheck::new(stop.clone(), &metrics),
        });

        let public_listener = bind("public", config.server.listen, None).await?;
        let internal_listener = bind("internal", config.server.internal_listen, None).await?;
        let (tls_listener, certificate) = match &config.server.tls {
            Some(tls) => {
                let context = || format!("{}: [server.tls]", config.source.display());
                let first = server::tls::load(&tls.cert, &tls.key).with_context(context)?;
                // The resolver, not the acceptor, holds the certificate: a reload swaps it.
                let resolver = Arc::new(CertResolver::new(first));
                let acceptor = server::tls::acceptor(resolver.clone()).with_context(context)?;
                let mut listener = bind("tls", tls.listen, Some(acceptor)).await?;
                listener.http1_fast_lane = tls.http1_fast_lane;
                (Some(listener), Some(resolver))
            }
            None => (None, None),
        };
        let limits = server::SharedLimits::new(config.server.limits);
        let reloader = Arc::new(Reloader::new(
            &config,
            live,
            shared,
            certificate,
            limits.clone(),
        ));
        // Every SIGHUP re-targets the access log to the reloaded `[log]`, or, when the file
        // was refused, reopens the current one (logrotate moved it away).
        let log = access_log.clone();
        reloader.on_reload(Box::new(move |applied| {
            let log = log.clone();
            let next = applied.map(|config| config.log.clone());
            Box::pin(async move {
                let done = match &next {
                    Some(config) => log.apply(config).await,
                    None => log.reopen().await,
                };
                if let Err(e) = done {
                    tracing::error!(error = %e, "cannot reopen the access log");
                }
            })
        }));
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
            limits.clone(),
            stop.clone(),
        ));
        let mut internal_task = JoinSet::new();
        internal_task.spawn(server::serve(
            internal_listener,
            internal,
            metrics.clone(),
            limits.clone(),
            internal_stop,
        ));
        if let Some(listener) = tls_listener {
            tasks.spawn(server::serve(
                listener,
                public,
                metrics.clone(),
                limits,
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
            access_log,
            shutdown,
            tasks,
            internal_shutdown,
            internal_task,
            reloader,
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
    /// Reloads `gateway.toml` and the files it names, as SIGHUP does (see [`reload`]): on
    /// success later requests see the new configuration; on failure nothing changes. Either
    /// way the outcome is logged and counted.
    pub async fn reload(&self) -> Result<Applied, ReloadError> {
        self.reloader.reload().await
    }

    /// Registers something to do after every reload attempt, e.g. reopening a log file.
    pub fn on_reload(&self, hook: ReloadHook) {
        self.reloader.on_reload(hook);
    }

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
        // Every public request has finished (or the drain gave up on it): write out the
        // access log's last lines.
        if let Err(e) = self.access_log.close().await {
            tracing::error!(error = %e, "cannot write the access log's last lines");
        }
        // Dropping the set aborts whatever is left of it.
    }
}

// === impl PublicService ===

impl PublicService {
    /// A request for the authorization server, from the client at `client_addr`.
    async fn oauth(
        &self,
        oauth: &OAuthServer,
        req: Request<Incoming>,
        conn: &ConnInfo,
        client_addr: std::net::IpAddr,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        // The same Host rules as the gateway's (which checks its own requests), so the
        // whole listener answers a request with no, two or a bad Host alike.
        if let Err(e) = crate::gateway::authority::of_request(&req) {
            let response = GatewayError::from(e).into_response();
            self.oauth_metrics.finish(response.status(), started);
            return response;
        }
        let secure = conn.proto == server::PROTO_HTTPS;
        let response = oauth.handle(req, secure, &client_addr.to_string()).await;
        self.oauth_metrics.finish(response.status(), started);
        response
    }
}

impl Handler for PublicService {
    async fn call(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = std::time::Instant::now();
        // The request runs to its end on the configuration current now, whatever a reload
        // stores meanwhile.
        let live = self.live.load_full();
        let request_id = crate::gateway::headers::request_id(req.headers());
        let log = live.gateway.access_log();
        let request_line = (req.method(), req.version(), req.uri().path());
        let entry = live
            .gateway
            .begin_entry(request_line, req.headers(), conn.peer, &request_id);
        let mut notes = Notes::default();
        let mut response = if OAuthServer::owns(req.uri().path()) {
            notes.route = Some(self.oauth_route.clone());
            let client_addr = live.gateway.client_addr(conn.peer, req.headers());
            // Boxed: the state of one branch of a future is not laid over the other's, and
            // every proxied request's future would carry room for this one too (3.4 KB,
            // copied whenever the request's future is moved: benches/README.md).
            Box::pin(self.oauth(&live.oauth, req, conn, client_addr)).await
        } else {
            live.gateway
                .handle(req, conn, (&request_id, started), &mut notes)
                .await
        };
        response.headers_mut().insert(
            crate::gateway::headers::X_REQUEST_ID,
            crate::gateway::headers::unindexed(request_id),
        );
        let Some(mut entry) = entry else {
            return response;
        };
        entry.note(notes);
        let status = response.status();
        let log = log.clone();
        response
            .map(|body| Body::Logged(Box::new(LoggedBody::new(body, entry, log, status, started))))
    }

    type Fast = Self;

    fn fast_lane(&self) -> Option<&Self> {
        Some(self)
    }
}

impl FastLane for PublicService {
    /// The gateway's fast lane, for the paths that are not the authorization server's,
    /// each request on the gateway of the configuration current when it arrived.
    async fn serve(
        &self,
        client: &mut dyn server::ClientIo,
        conn: &ConnInfo,
        shutdown: &mut watch::Receiver<bool>,
        limits: &server::SharedLimits,
        accepted: std::time::Instant,
    ) -> Exit {
        let gateway_for = |raw_path: &str| -> Option<Arc<Gateway>> {
            (!OAuthServer::owns(raw_path)).then(|| self.live.load().gateway.clone())
        };
        crate::gateway::fast::serve(client, gateway_for, conn, shutdown, limits, accepted).await
    }
}

// === impl InternalService ===

impl Handler for InternalService {
    type Fast = NoFastLane;

    fn fast_lane(&self) -> Option<&NoFastLane> {
        None
    }

    async fn call(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
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
                let oauth = self.live.load().oauth.clone();
                let peer = conn.client_ip.to_str().unwrap_or("");
                let response = oauth.handle_verify(req, peer).await;
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
