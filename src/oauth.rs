//! The authorization server: routes `/oauth/*` and the metadata documents on the public
//! listener, and `/verify` on the internal one.
//!
//! This module owns the shared state ([`OAuthServer`]), reads each request's bounded body
//! ([`OAuthRequest`]) and dispatches it to the handler of its endpoint, one module per
//! endpoint: [`authorize`], `login`, `consent`, `logout`, `token`, `revoke`,
//! `introspect` (`/verify`), `metadata`. Handlers return
//! `Result<Response, EndpointError>`, and [`error`] turns every refusal into its response,
//! in the one place the dispatcher calls.
//!
//! The helpers the handlers share serve no endpoint: `client_auth` (RFC 6749 §2.3.1),
//! `issue` (issuing tokens, revoking grants), `proof` (DPoP at the token endpoint),
//! [`session`] and [`csrf`] (the browser's session and login-form binding), `throttle`
//! (password checks with brute-force protection), `form` (reading form bodies), [`pages`]
//! (HTML and redirects). The rules live in [`protocol`], [`authorize`]'s request validation
//! and [`resource`], which never touch hyper. Tokens are reached only through the
//! [`TokenStore`], passwords only through the [`UserDirectory`].

pub mod authorize;
mod client_auth;
mod consent;
pub mod csrf;
pub mod error;
mod form;
mod introspect;
mod issue;
mod login;
mod logout;
mod metadata;
pub mod pages;
mod proof;
pub mod protocol;
pub mod resource;
mod revoke;
pub mod session;
mod throttle;
mod token;

pub use client_auth::basic_credentials;

use crate::body::Body;
use crate::clock::Clock;
use crate::config::{ClientConfig, Config, OAuthConfig};
use crate::directory::UserDirectory;
use crate::metrics::Metrics;
use crate::store::TokenStore;
use bytes::Bytes;
use error::EndpointError;
use form::{FormLimits, FormRefusal};
use http::header::{HeaderMap, AUTHORIZATION};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use protocol::{ErrorCode, OAuthError, Params};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a login session lasts.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// The authorization server's shared state.
pub struct OAuthServer {
    settings: OAuthConfig,
    clients: HashMap<String, ClientConfig>,
    store: Arc<dyn TokenStore>,
    directory: Arc<dyn UserDirectory>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    throttle: crate::config::ThrottleConfig,
    /// The login-CSRF key, read from (or created in) the store at first use; shared with
    /// the servers that later reloads build, so a reload costs no store round trip.
    csrf_key: Arc<tokio::sync::OnceCell<csrf::CsrfKey>>,
    /// Size and time limits of the form bodies read here.
    form_limits: FormLimits,
    /// The protected routes as RFC 8707 resources, with their RFC 9728 metadata.
    resources: resource::Resources,
    /// Spent DPoP proof ids (shared with the guard, see `app::live::Shared`).
    proof_ids: Arc<crate::dpop::ProofIds>,
}

/// A request with its body read (bounded) and what the handlers need of its connection.
pub struct OAuthRequest {
    pub method: Method,
    pub query: String,
    pub headers: HeaderMap,
    pub form: Bytes,
    /// Came over TLS: cookies get `Secure`.
    pub secure: bool,
    /// The client's IP, for brute-force counting.
    pub peer: String,
    /// The authority the request was sent to (URI or `Host`), for a DPoP proof's `htu`.
    pub authority: Option<String>,
}

impl OAuthServer {
    pub fn new(
        config: &Config,
        store: Arc<dyn TokenStore>,
        directory: Arc<dyn UserDirectory>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings: config.oauth.clone(),
            clients: config
                .clients
                .iter()
                .map(|c| (c.id.clone(), c.clone()))
                .collect(),
            store,
            directory,
            clock,
            metrics,
            throttle: config.users.throttle,
            csrf_key: Arc::new(tokio::sync::OnceCell::new()),
            form_limits: FormLimits::new(&config.server.limits),
            resources: resource::Resources::new(&config.oauth.issuer, &config.routes),
            proof_ids: Arc::default(),
        }
    }

    /// The same server spending DPoP proof ids from `ids` (the process's one set).
    pub fn with_proof_ids(mut self, ids: Arc<crate::dpop::ProofIds>) -> Self {
        self.proof_ids = ids;
        self
    }

    /// A server for a reloaded `config` (clients, scopes, settings, limits) and
    /// `directory`, on this one's store, clock, metrics and login-CSRF key.
    pub fn reconfigured(&self, config: &Config, directory: Arc<dyn UserDirectory>) -> Self {
        let mut next = Self::new(
            config,
            self.store.clone(),
            directory,
            self.clock.clone(),
            self.metrics.clone(),
        );
        next.csrf_key = self.csrf_key.clone();
        next.proof_ids = self.proof_ids.clone();
        next
    }

    /// True for the paths this server answers on the public listener.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/oauth/")
            || path == "/.well-known/oauth-authorization-server"
            || path.starts_with(resource::METADATA_PREFIX)
            || path == metadata::JWKS_PATH
    }

    /// Serves one public-listener request under `/oauth/` or a metadata path.
    pub async fn handle(&self, req: Request<Incoming>, secure: bool, peer: &str) -> Response<Body> {
        let path = req.uri().path().to_string();
        // The browser's forms get an HTML page when their body is refused.
        let page = matches!(path.as_str(), "/oauth/login" | "/oauth/consent");
        let result = match read(req, secure, peer, self.form_limits).await {
            Ok(req) => self.route(&req, &path).await,
            Err(refusal) => Err(EndpointError::Form { refusal, page }),
        };
        respond(result)
    }

    /// Serves `POST /verify` on the internal listener, called from `peer` (for audit lines).
    pub async fn handle_verify(&self, req: Request<Incoming>, peer: &str) -> Response<Body> {
        let result = match read(req, false, peer, self.form_limits).await {
            Ok(req) if req.method == Method::POST => self.introspect(&req).await,
            Ok(_) => Err(EndpointError::MethodNotAllowed { allow: "POST" }),
            Err(refusal) => Err(EndpointError::Form {
                refusal,
                page: false,
            }),
        };
        respond(result)
    }

    /// The handler of each public endpoint, by method and path.
    async fn route(&self, req: &OAuthRequest, path: &str) -> Result<Response<Body>, EndpointError> {
        let not_allowed = |allow| Err(EndpointError::MethodNotAllowed { allow });
        match (&req.method, path) {
            (&Method::GET, "/.well-known/oauth-authorization-server") => Ok(self.metadata()),
            (&Method::GET, p) if p.starts_with(resource::METADATA_PREFIX) => {
                self.resource_metadata(p)
            }
            (&Method::GET, metadata::JWKS_PATH) => self.jwks(),
            (&Method::GET, "/oauth/authorize") => self.authorize(req).await,
            (&Method::GET, "/oauth/login") => self.login_page(req).await,
            (&Method::POST, "/oauth/login") => self.login_submit(req).await,
            (&Method::GET, "/oauth/consent") => self.consent_page(req).await,
            (&Method::POST, "/oauth/consent") => self.consent_submit(req).await,
            (&Method::GET, "/oauth/logout") => self.logout(req).await,
            (&Method::POST, "/oauth/token") => self.token(req).await,
            (&Method::POST, "/oauth/revoke") => self.revoke(req).await,
            (_, "/oauth/token") | (_, "/oauth/revoke") => not_allowed("POST"),
            (_, "/oauth/authorize")
            | (_, "/.well-known/oauth-authorization-server")
            | (_, metadata::JWKS_PATH)
            | (_, "/oauth/logout") => not_allowed("GET"),
            (_, "/oauth/login") | (_, "/oauth/consent") => not_allowed("GET, POST"),
            (_, p) if p.starts_with(resource::METADATA_PREFIX) => not_allowed("GET"),
            _ => Err(EndpointError::NotFound { description: None }),
        }
    }

    fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.clients.get(id)
    }

    fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    /// The end of a grant the user authorizes now (`[oauth] grant_max_lifetime`).
    fn new_grant_end(&self) -> u64 {
        self.now() + self.settings.grant_max_lifetime.as_secs()
    }
}

/// The one place an endpoint's refusal becomes its response (see [`error`]).
fn respond(result: Result<Response<Body>, EndpointError>) -> Response<Body> {
    result.unwrap_or_else(EndpointError::into_response)
}

// === impl OAuthRequest ===

impl OAuthRequest {
    /// The form body's parameters (token, revoke, introspection, login and consent forms).
    fn form_params(&self) -> Result<Params, OAuthError> {
        let text = std::str::from_utf8(&self.form)
            .map_err(|_| OAuthError::new(ErrorCode::InvalidRequest, "the body is not UTF-8"))?;
        Params::parse(text)
    }

    /// `error` as the JSON answer of the token, revoke or introspection endpoint. RFC 6749
    /// §5.2: a client that tried Basic gets a Basic challenge, even when it failed.
    fn protocol_error(&self, error: OAuthError) -> EndpointError {
        EndpointError::Protocol {
            error,
            basic: self.headers.contains_key(AUTHORIZATION),
        }
    }
}

/// Reads the body of a form POST (bounded in size and time); other methods get an empty
/// body.
async fn read(
    req: Request<Incoming>,
    secure: bool,
    peer: &str,
    limits: FormLimits,
) -> Result<OAuthRequest, FormRefusal> {
    let (parts, body) = req.into_parts();
    let form = if parts.method == Method::POST {
        limits.read(&parts.headers, body).await?
    } else {
        Bytes::new()
    };
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            let host = parts.headers.get(http::header::HOST)?;
            host.to_str().ok().map(str::to_string)
        });
    Ok(OAuthRequest {
        authority,
        method: parts.method,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        form,
        secure,
        peer: peer.to_string(),
    })
}
