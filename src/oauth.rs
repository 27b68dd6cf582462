//! The authorization server: routes `/oauth/*` and the RFC 8414 metadata on the public
//! listener, and `/verify` on the internal one.
//!
//! This module owns the HTTP side (bodies, cookies, responses); the rules live in
//! [`protocol`] and [`authorize`], which never touch hyper. It reaches tokens only through
//! the [`TokenStore`] and passwords only through the [`UserDirectory`].

pub mod authorize;
mod browser;
pub mod csrf;
mod form;
mod introspect;
mod metadata;
pub mod pages;
mod proof;
pub mod protocol;
pub mod resource;
mod revoke;
pub mod session;
mod throttle;
mod token;

use crate::body::Body;
use crate::clock::Clock;
use crate::config::{ClientConfig, Config, OAuthConfig};
use crate::directory::UserDirectory;
use crate::error::{json_response, RETRY_AFTER_SECS};
use crate::metrics::Metrics;
use crate::secrets::{secret_hash_kind, verify_secret, SecretHashKind};
use crate::store::TokenStore;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use form::FormLimits;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
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

/// How a client authenticated at the token, revoke or introspection endpoint.
pub struct AuthenticatedClient<'a> {
    pub client: &'a ClientConfig,
    /// True when the credentials came in an `Authorization: Basic` header.
    pub via_basic: bool,
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

    /// Serves one public-listener request under `/oauth/` or the metadata path.
    pub async fn handle(&self, req: Request<Incoming>, secure: bool, peer: &str) -> Response<Body> {
        let path = req.uri().path().to_string();
        // The browser's forms get an HTML page when their body is refused.
        let page = matches!(path.as_str(), "/oauth/login" | "/oauth/consent");
        let req = match read(req, secure, peer, self.form_limits, page).await {
            Ok(r) => r,
            Err(response) => return *response,
        };
        match (&req.method, path.as_str()) {
            (&Method::GET, "/.well-known/oauth-authorization-server") => self.metadata(),
            (&Method::GET, p) if p.starts_with(resource::METADATA_PREFIX) => {
                self.resource_metadata(p)
            }
            (&Method::GET, metadata::JWKS_PATH) => self.jwks(),
            (&Method::GET, "/oauth/authorize") => self.authorize(&req).await,
            (&Method::GET, "/oauth/login") => self.login_page(&req).await,
            (&Method::POST, "/oauth/login") => self.login_submit(&req).await,
            (&Method::GET, "/oauth/consent") => self.consent_page(&req).await,
            (&Method::POST, "/oauth/consent") => self.consent_submit(&req).await,
            (&Method::GET, "/oauth/logout") => self.logout(&req).await,
            (&Method::POST, "/oauth/token") => self.token(&req).await,
            (&Method::POST, "/oauth/revoke") => self.revoke(&req).await,
            (_, "/oauth/token") | (_, "/oauth/revoke") => method_not_allowed("POST"),
            (_, "/oauth/authorize")
            | (_, "/.well-known/oauth-authorization-server")
            | (_, metadata::JWKS_PATH)
            | (_, "/oauth/logout") => method_not_allowed("GET"),
            (_, "/oauth/login") | (_, "/oauth/consent") => method_not_allowed("GET, POST"),
            (_, p) if p.starts_with(resource::METADATA_PREFIX) => method_not_allowed("GET"),
            _ => json_response(
                StatusCode::NOT_FOUND,
                r#"{"error":"not_found"}"#.to_string(),
            ),
        }
    }

    /// Serves `POST /verify` on the internal listener, called from `peer` (for audit lines).
    pub async fn handle_verify(&self, req: Request<Incoming>, peer: &str) -> Response<Body> {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        match read(req, false, peer, self.form_limits, false).await {
            Ok(r) => self.introspect(&r).await,
            Err(response) => *response,
        }
    }

    fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.clients.get(id)
    }

    fn now(&self) -> u64 {
        self.clock.now_unix()
    }

    /// The login-CSRF key shared by every instance on this store (created once if missing).
    async fn csrf_key(&self) -> Result<&csrf::CsrfKey, crate::store::StoreError> {
        self.csrf_key
            .get_or_try_init(|| async {
                let candidate: [u8; 32] = rand::random();
                let key = self.store.server_key(csrf::KEY_NAME, candidate).await?;
                Ok(csrf::CsrfKey::new(&key))
            })
            .await
    }

    /// The end of a grant the user authorizes now (`[oauth] grant_max_lifetime`).
    fn new_grant_end(&self) -> u64 {
        self.now() + self.settings.grant_max_lifetime.as_secs()
    }

    /// RFC 6749 §2.3.1: Basic (form-encoded id and secret) or `client_id`/`client_secret`
    /// in the body, never both. Public clients present only `client_id`.
    async fn authenticate_client(
        &self,
        req: &OAuthRequest,
        form: &Params,
    ) -> Result<AuthenticatedClient<'_>, OAuthError> {
        let basic = basic_credentials(&req.headers)?;
        let via_basic = basic.is_some();
        let (id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(_), _, Some(_)) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "use one client authentication method",
                ))
            }
            (Some((id, _)), Some(form_id), None) if form_id != id => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "client_id differs from the Basic credentials",
                ))
            }
            (Some((id, secret)), _, None) => (id, Some(secret)),
            (None, Some(id), secret) => (id.to_string(), secret.map(str::to_string)),
            (None, None, _) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "client authentication is required",
                ))
            }
        };
        let bad = || {
            crate::audit::invalid_client(&id, &req.peer);
            OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
        };
        let client = self.client(&id).ok_or_else(bad)?;
        match (&client.secret_hash, secret) {
            (None, None) => Ok(AuthenticatedClient { client, via_basic }),
            (Some(hash), Some(secret)) if self.secret_ok(&secret, hash).await => {
                Ok(AuthenticatedClient { client, via_basic })
            }
            _ => Err(bad()),
        }
    }

    /// The common start of the token, revoke and introspection endpoints: parse the form,
    /// authenticate the client, refuse repeated parameters (RFC 6749 §3.2).
    async fn client_form(
        &self,
        req: &OAuthRequest,
    ) -> Result<(AuthenticatedClient<'_>, Params), OAuthError> {
        let form = token::form_params(req)?;
        let authed = self.authenticate_client(req, &form).await?;
        if form.duplicated().is_some() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "a parameter was sent more than once",
            ));
        }
        Ok((authed, form))
    }

    /// Checks a client secret; argon2 hashes run on the blocking pool.
    async fn secret_ok(&self, secret: &str, hash: &str) -> bool {
        match secret_hash_kind(hash) {
            Some(SecretHashKind::Sha256) => verify_secret(secret, hash),
            Some(SecretHashKind::Argon2) => {
                let (secret, hash) = (secret.to_string(), hash.to_string());
                tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    }

    /// An RFC 6749 §5.2 error response, counted in metrics when `count` is set.
    fn oauth_error(&self, error: &OAuthError, via_basic: bool, count: bool) -> Response<Body> {
        if count {
            self.metrics
                .token_endpoint_errors
                .with_label_values(&[error.code.as_str()])
                .inc();
        }
        if error.code == ErrorCode::ServerError {
            tracing::error!(
                description = error.description,
                "authorization server error"
            );
        }
        let status = StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = json_response(status, error.to_json());
        response
            .headers_mut()
            .insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
        if error.code == ErrorCode::TemporarilyUnavailable {
            response
                .headers_mut()
                .insert(RETRY_AFTER, RETRY_AFTER_SECS.clone());
        }
        if error.code == ErrorCode::InvalidClient && via_basic {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="tollgate""#),
            );
        }
        response
    }
}

/// Reads the body of a form POST (bounded in size and time); other methods get an empty
/// body. A refused body is answered as a page when `page`, else as JSON.
async fn read(
    req: Request<Incoming>,
    secure: bool,
    peer: &str,
    limits: FormLimits,
    page: bool,
) -> Result<OAuthRequest, Box<Response<Body>>> {
    let (parts, body) = req.into_parts();
    let form = if parts.method == Method::POST {
        limits
            .read(&parts.headers, body)
            .await
            .map_err(|refusal| Box::new(refusal.into_response(page)))?
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

/// Decodes `Authorization: Basic` into a form-decoded (id, secret) pair (RFC 6749 §2.3.1);
/// `Ok(None)` without the header. Public for the fuzz target `basic_credentials`.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials");
    let text = value.to_str().map_err(|_| bad.clone())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(bad);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad.clone())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad.clone())?;
    let (id, secret) = decoded.split_once(':').ok_or(bad.clone())?;
    let id = form_decode(id).ok_or(bad.clone())?;
    let secret = form_decode(secret).ok_or(bad)?;
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        r#"{"error":"invalid_request"}"#.to_string(),
    );
    r.headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    r
}
