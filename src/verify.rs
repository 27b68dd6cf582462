//! How the guard learns whether a bearer token is active: the [`TokenVerifier`] trait,
//! the verified [`Principal`], and the remote RFC 7662 verifier.
//!
//! The gateway only ever sees this trait; the local verifier (the authorization server's
//! own store, and its own JWTs by signature: [`own_jwt`]), the remote one (any
//! introspection endpoint) and the JWKS one (a third-party issuer's JWTs: [`jwks`]) are
//! interchangeable.
//! A verifier that cannot answer returns an error, which the guard turns into 503: an
//! outage must never look like "token inactive", nor let a request through.
//!
//! The tokens of one client or user share one [`Identity`] ([`interner`]): the cache interns
//! every answer it keeps, and the local verifier asks its own interner with the fields of the
//! record it read before building anything.

pub mod cache;
mod interner;
pub mod jwks;
pub mod local;
pub mod own_jwt;
mod remote;

use crate::store::TokenHash;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use std::sync::Arc;

pub use local::LocalVerifier;
pub use remote::{verdict_from_answer, RemoteVerifier};

/// The identity behind an active token, as introspection reports it: who it is
/// ([`Identity`], shared) and until when the token lives (`exp`, the token's own).
///
/// The identity sits behind an `Arc` so that the verification cache keeps one copy per
/// identity, not per token: the tokens one client or user holds differ in `exp` only (see
/// `verify::cache`). Cloning a principal is a reference-count increment. Its fields read as
/// the identity's through `Deref`.
#[derive(Debug, Clone)]
pub struct Principal {
    pub identity: Arc<Identity>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<u64>,
}

/// Everything a principal says of a token except its `exp`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sub: String,
    pub client_id: String,
    pub username: Option<String>,
    pub scopes: Vec<String>,
    /// The token's `aud` (RFC 7519 §4.1.3, RFC 8707): whom it is meant for. Empty when the
    /// verifier reported none; a route with an `audience` then refuses the token.
    pub audiences: Vec<String>,
    /// RFC 9449: the thumbprint of the DPoP key the token is bound to (`cnf.jkt`). A bound
    /// token is accepted only as `Authorization: DPoP` with a proof made by that key.
    pub jkt: Option<String>,
    /// Prepared identity header values, so forwarding a request copies, not re-encodes.
    pub headers: IdentityHeaders,
}

/// `X-Auth-Subject`, `X-Auth-Client-Id`, `X-Auth-Scope` values for a principal.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: HeaderValue,
    pub client_id: HeaderValue,
    pub scope: HeaderValue,
}

/// What a verifier says of a token.
#[derive(Debug, Clone)]
pub enum Verdict {
    Active(Principal),
    Inactive,
}

/// Why a verifier could not answer. Every variant means "try again later" (503).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("introspection endpoint unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("introspection endpoint answered {status}")]
    Status { status: u16 },
    #[error("introspection answer could not be read")]
    Body(#[source] reqwest::Error),
    #[error("introspection answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("introspection answer is not RFC 7662 JSON")]
    BadAnswer(#[source] serde_json::Error),
    #[error("token store unavailable")]
    Store(#[source] crate::store::StoreError),
    #[error("token store unavailable (a re-check failed moments ago)")]
    StoreDown,
    #[error("the issuer's key set is unavailable")]
    Keys(#[source] jwks::JwksError),
    #[error("too many DPoP proofs inside their window to remember another")]
    ProofIdsFull,
}

/// Checks a bearer token. Implementations must be cheap to share across tasks.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Looks the token up. `Ok(Inactive)` only when the source positively says so. `hash`
    /// is the token's [`token_hash`](crate::store::token_hash), which the cache in front has
    /// already computed (the store is keyed by it).
    fn verify<'a>(
        &'a self,
        token: &'a str,
        hash: &'a TokenHash,
    ) -> BoxFuture<'a, Result<Verdict, VerifyError>>;

    /// The `verifier` metric label: `local`, `remote` or `jwks`.
    fn kind(&self) -> &'static str;

    /// Hears a revocation from the store's feed before the cache in front forgets the
    /// token, for verifiers that would otherwise accept it again on their own (a JWT is
    /// valid by its signature). Most verifiers have nothing to do.
    fn revoked(&self, _event: &crate::store::Revoked) {}
}

// === impl Principal ===

impl Principal {
    /// Builds a principal, or `None` if a field cannot travel in an HTTP header.
    pub fn new(
        sub: String,
        client_id: String,
        username: Option<String>,
        scopes: Vec<String>,
        exp: Option<u64>,
    ) -> Option<Self> {
        Some(Self {
            identity: Arc::new(Identity::new(sub, client_id, username, scopes)?),
            exp,
        })
    }

    /// The same principal with the token's audiences.
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Self {
        // Unshared right after `new`, so this copies nothing.
        Arc::make_mut(&mut self.identity).audiences = audiences;
        self
    }

    /// The same principal bound to the DPoP key `jkt`.
    pub fn with_jkt(mut self, jkt: Option<String>) -> Self {
        Arc::make_mut(&mut self.identity).jkt = jkt;
        self
    }
}

impl std::ops::Deref for Principal {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.identity
    }
}

// === impl Identity ===

impl Identity {
    /// An identity with no audiences and no DPoP key, or `None` if a field cannot travel in
    /// an HTTP header.
    pub fn new(
        sub: String,
        client_id: String,
        username: Option<String>,
        scopes: Vec<String>,
    ) -> Option<Self> {
        let headers = IdentityHeaders {
            subject: HeaderValue::from_str(&sub).ok()?,
            client_id: HeaderValue::from_str(&client_id).ok()?,
            scope: HeaderValue::from_str(&scopes.join(" ")).ok()?,
        };
        Some(Self {
            sub,
            client_id,
            username,
            scopes,
            audiences: Vec::new(),
            jkt: None,
            headers,
        })
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// True when the token's `aud` names `audience` (compared exactly).
    pub fn has_audience(&self, audience: &str) -> bool {
        self.audiences.iter().any(|a| a == audience)
    }
}
