//! Resource indicators (RFC 8707) and protected-resource metadata (RFC 9728).
//!
//! Every protected route is a resource with an identifier: its `audience` when it has one,
//! else `<issuer><path_prefix>` (so RFC 9728 §3.3 holds: the identifier of a route without
//! an audience is the URL its metadata is published for). `resource=…` at
//! `/oauth/authorize` and `/oauth/token` must name such identifiers (else `invalid_target`)
//! and they become the token's `aud`; without one, a token's `aud` is the issuer.
//!
//! The metadata of a protected route is served at
//! `/.well-known/oauth-protected-resource<path_prefix>` (RFC 9728 §3.1: the well-known
//! segment goes between host and path), and its URL is the `resource_metadata` parameter
//! of the route's 401 challenge (RFC 9728 §5.1).

use super::protocol::{ErrorCode, OAuthError};
use crate::config::{AuthMode, RouteConfig};
use serde_json::{json, Value};

/// Where protected-resource metadata documents live.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// One protected route as a resource.
#[derive(Debug, Clone)]
struct Resource {
    id: String,
    path_prefix: String,
    scopes: Vec<String>,
}

/// The resources of the configured protected routes.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    issuer: String,
    all: Vec<Resource>,
}

impl Resources {
    /// The protected routes of `routes` as resources of the authorization server `issuer`
    /// (without a trailing `/`).
    pub fn new<'a>(issuer: &str, routes: impl IntoIterator<Item = &'a RouteConfig>) -> Self {
        let all = routes
            .into_iter()
            .filter(|r| r.auth == AuthMode::Bearer)
            .map(|r| Resource {
                id: resource_id(issuer, r),
                path_prefix: r.path_prefix.clone(),
                scopes: r.scopes.clone(),
            })
            .collect();
        Self {
            issuer: issuer.to_string(),
            all,
        }
    }

    /// The audiences for a token from the `resource` parameters of a request: each must
    /// name a protected route (RFC 8707 §2: else `invalid_target`). Empty when none were
    /// sent. Repeated values count once.
    pub fn audiences(&self, requested: &[String]) -> Result<Vec<String>, OAuthError> {
        let mut audiences: Vec<String> = Vec::new();
        for r in requested {
            if !self.all.iter().any(|res| &res.id == r) {
                return Err(INVALID_TARGET);
            }
            if !audiences.contains(r) {
                audiences.push(r.clone());
            }
        }
        Ok(audiences)
    }

    /// The RFC 9728 metadata document served at `path` (below [`METADATA_PREFIX`]), if it
    /// is a protected route's.
    pub fn metadata(&self, path: &str) -> Option<Value> {
        let prefix = path.strip_prefix(METADATA_PREFIX)?;
        let resource = self.all.iter().find(|r| r.path_prefix == prefix)?;
        Some(json!({
            "resource": resource.id,
            "authorization_servers": [self.issuer],
            "scopes_supported": resource.scopes,
            "bearer_methods_supported": ["header"],
            // RFC 9728 §2: the guard also takes DPoP-bound tokens (RFC 9449).
            "dpop_signing_alg_values_supported": crate::dpop::SIGNING_ALGS,
            "resource_name": resource.path_prefix,
        }))
    }
}

/// A route's resource identifier: its `audience`, else `<issuer><path_prefix>`.
pub fn resource_id(issuer: &str, route: &RouteConfig) -> String {
    match &route.audience {
        Some(audience) => audience.clone(),
        None => format!("{issuer}{}", route.path_prefix),
    }
}

/// The URL of a route's RFC 9728 metadata, for its `resource_metadata` challenge parameter.
pub fn metadata_url(issuer: &str, path_prefix: &str) -> String {
    format!("{issuer}{METADATA_PREFIX}{path_prefix}")
}

/// RFC 8707 §2's error: the resource is not one this server issues tokens for.
pub const INVALID_TARGET: OAuthError = OAuthError::new(
    ErrorCode::InvalidTarget,
    "resource does not name a protected route's resource identifier",
);

/// Resources of a sample config for tests: `https://as.example` with protected routes
/// `/api/mail` (scope email, no audience) and `/api/send` (audience
/// `https://send.example`), and an open `/open`.
#[cfg(test)]
pub(crate) fn sample() -> Resources {
    let text = r#"
[oauth]
issuer = "https://as.example"
[[routes]]
name = "mail"
path_prefix = "/api/mail"
upstream = "http://127.0.0.1:3000"
scopes = ["email"]
[[routes]]
name = "send"
path_prefix = "/api/send"
upstream = "http://127.0.0.1:3000"
audience = "https://send.example"
[[routes]]
name = "open"
path_prefix = "/open"
upstream = "http://127.0.0.1:3000"
auth = "none"
"#;
    let config = crate::config::Config::from_str(text, std::path::Path::new("/t/gateway.toml"))
        .expect("valid config");
    Resources::new(&config.oauth.issuer, &config.routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_named_by_its_audience_or_the_issuer_and_its_prefix() {
        let r = sample();
        let want = vec![
            "https://as.example/api/mail".to_string(),
            "https://send.example".to_string(),
        ];
        assert_eq!(r.audiences(&want), Ok(want.clone()));
        let twice = [want[0].clone(), want[0].clone()];
        assert_eq!(r.audiences(&twice), Ok(vec![want[0].clone()]));
        assert_eq!(r.audiences(&[]), Ok(vec![]));
    }

    #[test]
    fn anything_else_is_invalid_target() {
        let r = sample();
        for bad in [
            "https://as.example/open",
            "https://as.example/api/mail/",
            "https://as.example/api/send",
            "https://as.example",
            "",
        ] {
            assert_eq!(
                r.audiences(&[bad.to_string()]),
                Err(INVALID_TARGET),
                "{bad}"
            );
        }
    }

    #[test]
    fn metadata_is_served_for_protected_routes_only() {
        let r = sample();
        let doc = r
            .metadata("/.well-known/oauth-protected-resource/api/mail")
            .expect("protected route");
        assert_eq!(doc["resource"], "https://as.example/api/mail");
        assert_eq!(doc["authorization_servers"], json!(["https://as.example"]));
        assert_eq!(doc["scopes_supported"], json!(["email"]));
        assert_eq!(doc["resource_name"], "/api/mail");
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert_eq!(
            doc["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA", "RS256"])
        );
        let send = r
            .metadata("/.well-known/oauth-protected-resource/api/send")
            .expect("protected route");
        assert_eq!(send["resource"], "https://send.example");
        for none in [
            "/.well-known/oauth-protected-resource/open",
            "/.well-known/oauth-protected-resource/api",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/api/mail/x",
        ] {
            assert!(r.metadata(none).is_none(), "{none}");
        }
        assert_eq!(
            metadata_url("https://as.example", "/api/mail"),
            "https://as.example/.well-known/oauth-protected-resource/api/mail"
        );
    }
}
