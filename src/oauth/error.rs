//! Everything the authorization server refuses a request with, and the one place where a
//! refusal becomes an HTTP response ([`EndpointError::into_response`], called by the
//! dispatcher in [`super`]). Handlers return `Result<Response<Body>, EndpointError>` and
//! build no error response themselves.
//!
//! How a refusal is told depends on who asked, and the variant says which, so a handler
//! cannot pick the wrong channel: the token, revoke and introspection endpoints answer
//! RFC 6749 §5.2 JSON; the browser's endpoints answer an HTML error page until the client's
//! redirect URI is proven, and afterwards tell the client by redirect (§4.1.2.1). Status
//! mappings are exhaustive matches: a new variant or page forces a decision.

use super::form::FormRefusal;
use super::pages;
use super::protocol::{ErrorCode, OAuthError, RedirectTarget};
use crate::body::Body;
use crate::error::{error_chain, json_response, RETRY_AFTER_SECS};
use crate::store::StoreError;
use http::header::{HeaderValue, ALLOW, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

/// Why an authorization-server endpoint refused a request, and how the refusal is told.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// RFC 6749 §5.2 JSON from the token, revoke or introspection endpoint. `basic`: the
    /// client tried `Authorization: Basic`, so an `invalid_client` answer challenges it
    /// (even when the credentials it tried were malformed).
    #[error("{error}")]
    Protocol { error: OAuthError, basic: bool },
    /// An HTML error page, for the browser.
    #[error(transparent)]
    Page(#[from] PageError),
    /// The error told to the client through its proven redirect URI (§4.1.2.1, §4.2.2.1).
    #[error("{error} (told by redirect)")]
    Redirect {
        to: RedirectTarget,
        error: OAuthError,
    },
    /// The form body could not be read: an HTML page for the browser's forms (`page`),
    /// else JSON `invalid_request`.
    #[error("form body refused: {refusal:?}")]
    Form { refusal: FormRefusal, page: bool },
    /// The path is served, but not with this method: 405 with `Allow`.
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    /// Nothing is served here: 404 `not_found`, with a description when there is one.
    #[error("not found")]
    NotFound { description: Option<&'static str> },
}

/// The HTML error pages of the browser's endpoints.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The request is malformed or its client or redirect URI is not proven; the message
    /// (shown to the user) says which.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// A login or consent form without the fields it must have.
    #[error("the form was not filled in as expected")]
    BadForm,
    /// A login or consent form whose CSRF field is missing, another browser's, or stale.
    #[error("the form's CSRF field was refused")]
    FormExpired,
    /// The client left the configuration (a reload) after its request was validated.
    #[error("the client is not registered")]
    UnknownClient,
    /// The token store cannot answer.
    #[error("the token store is unavailable")]
    Unavailable(#[source] StoreError),
}

// === impl EndpointError ===

impl EndpointError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            EndpointError::Protocol { error, .. } => protocol_status(error.code),
            EndpointError::Page(page) => page.status(),
            EndpointError::Redirect { .. } => StatusCode::FOUND,
            EndpointError::Form { refusal, .. } => form_refusal(*refusal).0,
            EndpointError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            EndpointError::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The answer. A server error or a store failure is logged here, with its cause; the
    /// client gets a short generic description.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match self {
            EndpointError::Protocol { error, basic } => protocol_response(status, &error, basic),
            EndpointError::Page(page) => page.into_response(status),
            EndpointError::Redirect { to, error } => pages::redirect(&to.error_uri(&error)),
            EndpointError::Form { refusal, page } => {
                if page {
                    return pages::error(
                        status,
                        "Invalid request",
                        "The form could not be read. Go back and try again.",
                    );
                }
                let description = form_refusal(refusal).1;
                json_response(
                    status,
                    OAuthError::new(ErrorCode::InvalidRequest, description).to_json(),
                )
            }
            EndpointError::MethodNotAllowed { allow } => {
                let mut response =
                    json_response(status, r#"{"error":"invalid_request"}"#.to_string());
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                response
            }
            EndpointError::NotFound { description: None } => {
                json_response(status, r#"{"error":"not_found"}"#.to_string())
            }
            EndpointError::NotFound {
                description: Some(description),
            } => json_response(
                status,
                serde_json::json!({ "error": "not_found", "error_description": description })
                    .to_string(),
            ),
        }
    }
}

/// RFC 6749 §5.2: the status of an error at the token, revoke and introspection endpoints.
fn protocol_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// The RFC 6749 §5.2 JSON answer, uncacheable (§5.1), with `Retry-After` on an outage of
/// ours and a Basic challenge for a client that tried Basic credentials.
fn protocol_response(status: StatusCode, error: &OAuthError, basic: bool) -> Response<Body> {
    if error.code == ErrorCode::ServerError {
        tracing::error!(
            description = error.description,
            "authorization server error"
        );
    }
    let mut response = json_response(status, error.to_json());
    let headers = response.headers_mut();
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if error.code == ErrorCode::TemporarilyUnavailable {
        headers.insert(RETRY_AFTER, RETRY_AFTER_SECS.clone());
    }
    if error.code == ErrorCode::InvalidClient && basic {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Basic realm="tollgate""#),
        );
    }
    response
}

/// The status and `error_description` of a refused form body.
fn form_refusal(refusal: FormRefusal) -> (StatusCode, &'static str) {
    match refusal {
        FormRefusal::NotForm => (
            StatusCode::BAD_REQUEST,
            "the body must be application/x-www-form-urlencoded",
        ),
        FormRefusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
        FormRefusal::TooSlow => (
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        ),
        FormRefusal::Broken => (StatusCode::BAD_REQUEST, "the body was cut off"),
    }
}

// === impl PageError ===

impl PageError {
    pub fn status(&self) -> StatusCode {
        match self {
            PageError::InvalidRequest(_) | PageError::BadForm | PageError::UnknownClient => {
                StatusCode::BAD_REQUEST
            }
            PageError::FormExpired => StatusCode::FORBIDDEN,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn into_response(self, status: StatusCode) -> Response<Body> {
        let (title, message) = match &self {
            PageError::InvalidRequest(message) => ("Invalid request", *message),
            PageError::BadForm => ("Invalid request", "The form was not filled in as expected."),
            PageError::FormExpired => (
                "Form expired",
                "This form expired or came from another page. Go back to the application and start again.",
            ),
            PageError::UnknownClient => (
                "Unknown application",
                "The application is not registered here.",
            ),
            PageError::Unavailable(e) => {
                log_store_error(e);
                ("Unavailable", pages::SIGN_IN_UNAVAILABLE)
            }
        };
        pages::error(status, title, message)
    }
}

/// A store that cannot answer (locked, read-only, unreachable) is an outage the client
/// may retry: 503 `temporarily_unavailable`, never a 500.
pub(super) fn store_error(e: StoreError) -> OAuthError {
    log_store_error(&e);
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the token store is unavailable",
    )
}

/// Logs a store failure. An unreachable store is an outage whose start and end the readiness
/// probe logs once each; per request it is only a debug line. Anything else (a corrupt
/// record, a busy SQLite file) is an error worth a line every time.
pub(super) fn log_store_error(e: &StoreError) {
    if e.is_unreachable() {
        tracing::debug!(error = %error_chain(e), "token store unreachable");
    } else {
        tracing::error!(error = %error_chain(e), "token store failed");
    }
}

#[cfg(test)]
mod tests;
