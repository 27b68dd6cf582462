//! The one place where a gateway error becomes an HTTP response.
//!
//! The status mapping is an exhaustive `match`: a new variant forces a decision. Client
//! mistakes get a precise 4xx; our own or the upstream's failures get a short generic body,
//! and their cause chain goes to the log, never to the client.

use crate::body::Body;
use crate::gateway::authority::AuthorityError;
use crate::gateway::framing::FramingError;
use crate::gateway::route::PathError;
use crate::metrics::GuardOutcome;
use crate::verify::VerifyError;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use std::sync::Arc;

/// Whose fault an error is: decides the log level and how much the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    Client,
    Upstream,
    Internal,
}

/// The cause of an upstream failure, from whichever client path met it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        source: BoxError,
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
        source: BoxError,
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
        source: BoxError,
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
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::WrongAudience { .. } => StatusCode::UNAUTHORIZED,
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
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::WrongAudience { .. }
            | GatewayError::InsufficientScope { .. }
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
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::WrongAudience { .. } => Some(GuardOutcome::Invalid),
            GatewayError::InsufficientScope { .. } => Some(GuardOutcome::InsufficientScope),
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
            GatewayError::InvalidDpopProof { .. } => "invalid_dpop_proof",
            GatewayError::InsufficientScope { .. } => "insufficient_scope",
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
            | GatewayError::InvalidDpopProof { .. }
            | GatewayError::WrongAudience { .. }
            | GatewayError::InsufficientScope { .. }
            | GatewayError::VerifierUnavailable(_)
            | GatewayError::BadUpstreamRequest(_)
            | GatewayError::RequestBodyTooLarge { .. }
            | GatewayError::RequestBodyTimeout { .. }
            | GatewayError::RequestBodyBroken { .. } => self.to_string(),
        }
    }

    /// Logs what the operator needs and answers what the client may know.
    pub fn into_response(self) -> Response<Body> {
        match self.source_kind() {
            ErrorSource::Client => tracing::debug!(error = %self, "request refused"),
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

/// `Retry-After` (seconds, RFC 9110 §10.2.3) on every 503 for an outage of ours.
pub static RETRY_AFTER_SECS: HeaderValue = HeaderValue::from_static("5");

/// A JSON response with `Cache-Control: no-store`.
pub fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// "outer: inner: innermost", for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
