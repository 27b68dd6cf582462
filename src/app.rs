//! Wiring: builds the shared state from a [`Config`], binds the listeners, and drains
//! them on shutdown. Tests start the real thing through [`App::start`] on port 0.

use crate::body::Body;
use crate::clock::{Clock, SystemClock};
use crate::config::{AuthMode, Config, VerifySource};
use crate::error::json_response;
use crate::gateway::{ConnInfo, Gateway};
use crate::metrics::Metrics;
use crate::server::{self, Handler, Listener};
use crate::verify::cache::VerifyCache;
use crate::verify::{RemoteVerifier, TokenVerifier};
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
}

/// The public listener: the proxy (and, with the authorization server, `/oauth/*`).
struct PublicService {
    gateway: Gateway,
}

/// The internal listener: metrics and health.
struct InternalService {
    metrics: Arc<Metrics>,
}

impl App {
    /// Builds everything the config describes and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Running> {
        let metrics = Arc::new(Metrics::new());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let verifier = build_verifier(&config, clock.clone(), metrics.clone())?;
        let gateway = Gateway::new(&config.routes, verifier, &metrics);
        let public = Arc::new(PublicService { gateway });
        let internal = Arc::new(InternalService {
            metrics: metrics.clone(),
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

        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(server::serve(
            public_listener,
            public.clone(),
            metrics.clone(),
            stop.clone(),
        ));
        tasks.spawn(server::serve(
            internal_listener,
            internal,
            metrics.clone(),
            stop.clone(),
        ));
        if let Some(listener) = tls_listener {
            tasks.spawn(server::serve(listener, public, metrics.clone(), stop));
        }
        tracing::info!(%public_addr, %internal_addr, tls_addr = ?tls_addr, "tollgate is listening");
        Ok(Running {
            public_addr,
            internal_addr,
            tls_addr,
            metrics,
            shutdown,
            tasks,
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

fn build_verifier(
    config: &Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<Arc<VerifyCache>>> {
    let needs_verifier = config.routes.iter().any(|r| r.auth == AuthMode::Bearer);
    let verifier: Arc<dyn TokenVerifier> = match &config.verify.source {
        VerifySource::Remote(remote) => Arc::new(
            RemoteVerifier::new(remote, clock.clone())
                .context("cannot build the introspection client")?,
        ),
        VerifySource::Local if needs_verifier => {
            anyhow::bail!(
                "{}: [verify].source = \"local\" needs the authorization server's token store",
                config.source.display()
            )
        }
        VerifySource::Local => return Ok(None),
    };
    Ok(Some(Arc::new(VerifyCache::new(
        &config.verify,
        verifier,
        clock,
        metrics,
    ))))
}

// === impl Running ===

impl Running {
    /// Stops accepting, lets in-flight requests finish (bounded), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

// === impl PublicService ===

impl Handler for PublicService {
    async fn call(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        self.gateway.handle(req, conn).await
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
            (&Method::GET, "/healthz") | (&Method::GET, "/readyz") => {
                json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_string())
            }
            _ => json_response(
                StatusCode::NOT_FOUND,
                r#"{"error":"not_found"}"#.to_string(),
            ),
        }
    }
}
