//! `GET /.well-known/oauth-authorization-server` (RFC 8414 §2): lists only what is
//! switched on; and `GET /.well-known/oauth-protected-resource/<path_prefix>` (RFC 9728
//! §3), one document per protected route.

use super::OAuthServer;
use crate::body::Body;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;
use http::StatusCode;
use serde_json::json;

impl OAuthServer {
    pub(super) fn metadata(&self) -> Response<Body> {
        let s = &self.settings;
        let mut grant_types = vec!["authorization_code", "refresh_token", "client_credentials"];
        if s.allow_password_grant {
            grant_types.push("password");
        }
        let mut response_types = vec!["code"];
        if s.allow_implicit {
            grant_types.push("implicit");
            response_types.push("token");
        }
        let issuer = &s.issuer;
        let body = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth/authorize"),
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "scopes_supported": s.scopes.keys().collect::<Vec<_>>(),
            "response_types_supported": response_types,
            "response_modes_supported": if s.allow_implicit { vec!["query", "fragment"] } else { vec!["query"] },
            "grant_types_supported": grant_types,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
        });
        let mut response = Response::new(Body::from(body.to_string()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        response
    }

    /// The RFC 9728 metadata of the protected route whose prefix follows the well-known
    /// segment of `path`; 404 for anything else.
    pub(super) fn resource_metadata(&self, path: &str) -> Response<Body> {
        let Some(document) = self.resources.metadata(path) else {
            return crate::error::json_response(
                StatusCode::NOT_FOUND,
                json!({
                    "error": "not_found",
                    "error_description": "no protected route has this prefix",
                })
                .to_string(),
            );
        };
        let mut response = Response::new(Body::from(document.to_string()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        response
    }
}
