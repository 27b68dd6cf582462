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

/// "outer: inner: innermost", for logs and start-up errors. A cause whose text the message
/// already ends with is not repeated: many errors (ours with `cannot read {path}: {source}`,
/// rusqlite's and redis's wrappers) print their cause and also give it as `source()`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read cert.pem: {source}")]
        Shows {
            #[source]
            source: std::io::Error,
        },
        #[error("listener failed")]
        Hides(#[source] std::io::Error),
    }

    fn missing() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
    }

    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        let e = Outer::Shows { source: missing() };
        assert_eq!(
            error_chain(&e),
            "cannot read cert.pem: No such file or directory"
        );
    }

    #[test]
    fn a_cause_the_message_leaves_out_is_appended() {
        let e = Outer::Hides(missing());
        assert_eq!(
            error_chain(&e),
            "listener failed: No such file or directory"
        );
    }
}
