//! `GET /.well-known/oauth-authorization-server` (RFC 8414 §2): lists only what is
//! switched on; `GET /.well-known/jwks.json` (RFC 7517 §5): the public keys of JWT access
//! tokens, current first, then the previous ones still accepted (404 when tokens are opaque);
//! and `GET /.well-known/oauth-protected-resource/<path_prefix>` (RFC 9728 §3), one document
//! per protected route.

use super::error::EndpointError;
use super::OAuthServer;
use crate::body::Body;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;
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
        let mut body = json!({
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
            "dpop_signing_alg_values_supported": crate::dpop::SIGNING_ALGS,
        });
        if s.token_format.keys().is_some() {
            body["jwks_uri"] = json!(format!("{issuer}{JWKS_PATH}"));
        }
        json_with_max_age(body.to_string())
    }

    pub(super) fn jwks(&self) -> Result<Response<Body>, EndpointError> {
        match self.settings.token_format.keys() {
            Some(keys) => Ok(json_with_max_age(keys.jwks().to_string())),
            None => Err(EndpointError::NotFound { description: None }),
        }
    }

    /// The RFC 9728 metadata of the protected route whose prefix follows the well-known
    /// segment of `path`; 404 for anything else.
    pub(super) fn resource_metadata(&self, path: &str) -> Result<Response<Body>, EndpointError> {
        let Some(document) = self.resources.metadata(path) else {
            return Err(EndpointError::NotFound {
                description: Some("no protected route has this prefix"),
            });
        };
        Ok(json_with_max_age(document.to_string()))
    }
}

/// The path of the JWK Set on the public listener.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A public JSON document caches may keep for five minutes. A key rollover keeps the old key
/// listed (`signing_keys_previous`), and verifiers refetch on an unknown `kid`, so a copy
/// that old never refuses a good token.
fn json_with_max_age(body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    response
}
