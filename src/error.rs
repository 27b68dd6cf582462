//! What every error response shares, whoever answers: the JSON body's headers, the
//! `Retry-After` of an outage of ours, and the cause chain written to the log. Each part
//! turns its own errors into responses in one place: the gateway's are
//! [`crate::gateway::error`], the authorization server's live in [`crate::oauth`].

use crate::body::Body;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

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
