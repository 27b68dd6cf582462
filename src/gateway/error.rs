//! Everything that can stop a request on its way through the gateway, and the one place
//! where it becomes an HTTP response ([`GatewayError::into_response`]), whichever engine
//! served the request.
//!
//! The status mapping is an exhaustive `match`: a new variant forces a decision. Client
//! mistakes get a precise 4xx; our own or the upstream's failures get a short generic body,
//! and their cause chain goes to the log, never to the client.

use super::authority::AuthorityError;
use super::framing::FramingError;
use super::route::PathError;
use crate::body::Body;
use crate::error::{error_chain, json_response, RETRY_AFTER_SECS};
use crate::metrics::GuardOutcome;
use crate::verify::VerifyError;
use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use std::sync::Arc;

/// Whose fault an error is: decides the log level and how much the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Internal,
}

/// Why an upstream exchange failed below HTTP, as whichever engine met it: typed, so the
/// log's cause chain is the engine's own error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamCause {
    /// The hyper path's HTTP/1.1 connection from the shared pool.
    #[error(transparent)]
    Connection(#[from] hyper::Error),
    /// Connecting (TCP, the TLS handshake), or the fast lane's own upstream connection.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The fast lane could not read the upstream's answer as HTTP/1.1.
    #[error("{0}")]
    Protocol(&'static str),
}

/// Everything that can stop a request on its way through the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches the request")]
    NoRoute,
    #[error("request path cannot be routed")]
    BadPath(#[from] PathError),
    #[error("request authority cannot be trusted")]
    BadAuthority(#[from] AuthorityError),
    // Each guard refusal carries its route's `WWW-Authenticate` value (`guard::Challenges`).
    #[error("request has no bearer token")]
    MissingToken { challenge: HeaderValue },
    #[error("bearer token is malformed")]
    MalformedToken { challenge: HeaderValue },
    #[error("bearer token is not active")]
    InvalidToken { challenge: HeaderValue },
    #[error("bearer token is not meant for this resource (aud)")]
    WrongAudience { challenge: HeaderValue },
    #[error("bearer token lacks a required scope")]
    InsufficientScope { challenge: HeaderValue },
    #[error("DPoP proof refused: {reason}")]
    InvalidDpopProof {
        challenge: HeaderValue,
        reason: crate::dpop::ProofError,
    },
    #[error("token verifier unavailable")]
    VerifierUnavailable(#[source] Arc<VerifyError>),
    // `upstream` is the target's URL for the operator's log (userinfo redacted); clients are
    // told the route name at most (see `client_description`).
    #[error("route {route:?}: cannot connect to upstream {upstream}")]
    UpstreamConnect {
        route: String,
        upstream: String,
        #[source]
        source: UpstreamCause,
    },
    #[error(
        "route {route:?}: upstream {upstream} sent no response headers within {timeout_ms} ms"
    )]
    UpstreamTimeout {
        route: String,
        upstream: String,
        timeout_ms: u128,
    },
    #[error("route {route:?}: upstream {upstream} failed")]
    UpstreamFailed {
        route: String,
        upstream: String,
        #[source]
        source: UpstreamCause,
    },
    #[error("upstream {upstream} sent a response whose framing cannot be trusted")]
    UpstreamFraming {
        route: String,
        upstream: String,
        #[source]
        source: FramingError,
    },
    #[error("cannot build the upstream request")]
    BadUpstreamRequest(#[source] http::Error),
    #[error("the request body is larger than {limit} bytes")]
    RequestBodyTooLarge { limit: u64 },
    #[error("the request body paused for longer than {timeout_ms} ms")]
    RequestBodyTimeout { timeout_ms: u128 },
    #[error("the request body could not be read")]
    RequestBodyBroken {
        #[source]
        source: UpstreamCause,
    },
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadPath(_) | GatewayError::BadAuthority(_) => StatusCode::BAD_REQUEST,
            GatewayError::MissingToken { .. }
            | GatewayError::MalformedToken { .. }
            | GatewayError::InvalidToken { .. }
            | GatewayError::WrongAudience { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::InvalidDpopProof { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            GatewayError::VerifierUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::UpstreamFraming { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BadUpstreamRequest(_) | GatewayError::RequestBodyBroken { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::RequestBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RequestBodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        }
    }

    pub fn source_kind(&self) -> ErrorSource {
        match self {
            GatewayError::NoRoute
            | GatewayError::BadPath(_)
            | GatewayError::BadAuthority(_)
            | GatewayError::MissingToken { .. }
            | GatewayError::MalformedToken { .. }
            | GatewayError::InvalidToken { .. }
            | GatewayError::WrongAudience { .. }
            | GatewayError::InsufficientScope { .. }
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::BadUpstreamRequest(_)
            | GatewayError::RequestBodyTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::RequestBodyBroken { .. } => ErrorSource::Client,
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::UpstreamFraming { .. } => ErrorSource::Upstream,
            GatewayError::VerifierUnavailable(_) => ErrorSource::Internal,
        }
    }

    /// The guard decision this error records, if it came from the guard.
    pub fn guard_outcome(&self) -> Option<GuardOutcome> {
        match self {
            GatewayError::MissingToken { .. } => Some(GuardOutcome::Missing),
            GatewayError::MalformedToken { .. }
            | GatewayError::InvalidToken { .. }
            | GatewayError::WrongAudience { .. } => Some(GuardOutcome::Invalid),
            GatewayError::InsufficientScope { .. } => Some(GuardOutcome::InsufficientScope),
            GatewayError::InvalidDpopProof { .. } => Some(GuardOutcome::Invalid),
            GatewayError::VerifierUnavailable(_) => Some(GuardOutcome::VerifierError),
            GatewayError::NoRoute
            | GatewayError::BadPath(_)
            | GatewayError::BadAuthority(_)
            | GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::UpstreamFraming { .. }
            | GatewayError::BadUpstreamRequest(_)
            | GatewayError::RequestBodyTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::RequestBodyBroken { .. } => None,
        }
    }

    /// The `error` code in the JSON body.
    fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "not_found",
            GatewayError::BadPath(_)
            | GatewayError::BadAuthority(_)
            | GatewayError::BadUpstreamRequest(_)
            | GatewayError::RequestBodyBroken { .. } => "invalid_request",
            GatewayError::RequestBodyTooLarge { .. } => "request_too_large",
            GatewayError::RequestBodyTimeout { .. } => "request_timeout",
            GatewayError::MissingToken { .. } | GatewayError::MalformedToken { .. } => {
                "unauthorized"
            }
            GatewayError::InvalidToken { .. } | GatewayError::WrongAudience { .. } => {
                "invalid_token"
            }
            GatewayError::InsufficientScope { .. } => "insufficient_scope",
            GatewayError::InvalidDpopProof { .. } => "invalid_dpop_proof",
            GatewayError::VerifierUnavailable(_) => "temporarily_unavailable",
            GatewayError::UpstreamConnect { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::UpstreamFraming { .. } => "bad_gateway",
            GatewayError::UpstreamTimeout { .. } => "gateway_timeout",
        }
    }

    /// The `error_description`: what the client may know. An upstream's URL (its address,
    /// maybe credentials) is the operator's business; the client learns the route name.
    fn client_description(&self) -> String {
        match self {
            GatewayError::BadPath(e) => e.to_string(),
            GatewayError::BadAuthority(e) => e.to_string(),
            GatewayError::UpstreamConnect { route, .. } => {
                format!("the upstream of route {route:?} cannot be reached")
            }
            GatewayError::UpstreamTimeout { route, .. } => {
                format!("the upstream of route {route:?} did not answer in time")
            }
            GatewayError::UpstreamFailed { route, .. }
            | GatewayError::UpstreamFraming { route, .. } => {
                format!("the upstream of route {route:?} did not answer properly")
            }
            GatewayError::NoRoute
            | GatewayError::MissingToken { .. }
            | GatewayError::MalformedToken { .. }
            | GatewayError::InvalidToken { .. }
            | GatewayError::WrongAudience { .. }
            | GatewayError::InsufficientScope { .. }
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::VerifierUnavailable(_)
            | GatewayError::BadUpstreamRequest(_)
            | GatewayError::RequestBodyTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::RequestBodyBroken { .. } => self.to_string(),
        }
    }

    /// Logs what the operator needs and answers what the client may know.
    /// True when the verifier could not answer because the token store is unreachable.
    fn is_store_outage(&self) -> bool {
        match self {
            GatewayError::VerifierUnavailable(e) => match &**e {
                crate::verify::VerifyError::Store(e) => e.is_unreachable(),
                crate::verify::VerifyError::StoreDown => true,
                _ => false,
            },
            _ => false,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        match self.source_kind() {
            ErrorSource::Client => tracing::debug!(error = %self, "request refused"),
            // An unreachable store is an outage the readiness probe logs as it starts and
            // ends; a line per request would bury everything else.
            ErrorSource::Internal if self.is_store_outage() => {
                tracing::debug!(error = %error_chain(&self), "request failed")
            }
            ErrorSource::Upstream | ErrorSource::Internal => {
                tracing::warn!(error = %error_chain(&self), "request failed")
            }
        }
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.client_description(),
        });
        let status = self.status();
        let mut response = json_response(status, body.to_string());
        let challenge = match self {
            GatewayError::MissingToken { challenge }
            | GatewayError::MalformedToken { challenge }
            | GatewayError::InvalidToken { challenge }
            | GatewayError::WrongAudience { challenge }
            | GatewayError::InsufficientScope { challenge }
            | GatewayError::InvalidDpopProof { challenge, .. } => Some(challenge),
            _ => None,
        };
        if let Some(c) = challenge {
            response.headers_mut().insert(WWW_AUTHENTICATE, c);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, RETRY_AFTER_SECS.clone());
        }
        response
    }
}
