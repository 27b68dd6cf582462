//! A stand-in "mail" API for the first run, served on the internal listener under
//! `/demo/mail/`. The shipped `gateway.toml` protects it with a bearer route so a newcomer
//! can walk the whole flow with nothing else running. It only echoes who the gateway says
//! is calling (the `X-Auth-*` headers); replace the route's upstream with your API.

use crate::body::Body;
use crate::error::json_response;
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

/// Answers `GET /demo/mail/…` with a tiny inbox for the calling user.
pub fn mail(path: &str, headers: &HeaderMap) -> Response<Body> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let user = header("x-auth-subject");
    if user.is_empty() {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "call me through the gateway's protected route"}).to_string(),
        );
    }
    let body = json!({
        "path": path,
        "user": user,
        "client_id": header("x-auth-client-id"),
        "scope": header("x-auth-scope"),
        "messages": [
            {"from": "tollgate@example.org", "subject": format!("Welcome, {user}"),
             "body": "This answer came through the gateway with a verified bearer token."}
        ]
    });
    json_response(StatusCode::OK, body.to_string())
}
