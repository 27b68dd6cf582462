//! Pure OAuth 2.0 protocol logic: parameter parsing, error codes, scope and redirect-URI
//! rules, PKCE. No IO and no hyper types, so every rule here is a table-driven test.
//!
//! RFC 6749 (§3.1 duplicate parameters, §3.3 scope, §4.1.2.1 / §5.2 errors and where they
//! may be sent), RFC 7636 (PKCE, S256 only: `plain` is refused per RFC 9700 §2.1.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// RFC 6749 error codes (§4.1.2.1, §5.2) plus RFC 6750/7009 ones we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UnsupportedTokenType,
    InvalidScope,
    /// RFC 8707 §2: a `resource` this server does not issue tokens for.
    InvalidTarget,
    /// RFC 9449 §5: the `DPoP` proof of a token request is missing (when the client must
    /// send one), invalid or replayed.
    InvalidDpopProof,
    AccessDenied,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status of this error at the token, revoke and introspection endpoints.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidGrant
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::UnsupportedResponseType
            | ErrorCode::UnsupportedTokenType
            | ErrorCode::InvalidScope
            | ErrorCode::InvalidTarget
            | ErrorCode::InvalidDpopProof
            | ErrorCode::AccessDenied => 400,
        }
    }
}

/// An OAuth error with a human-readable description for the developer of the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: &'static str,
}

impl OAuthError {
    pub const fn new(code: ErrorCode, description: &'static str) -> Self {
        Self { code, description }
    }

    /// The RFC 6749 §5.2 JSON body.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "error": self.code.as_str(), "error_description": self.description })
            .to_string()
    }
}

/// Form or query parameters with RFC 6749 §3.1's rule: a parameter sent twice is an error.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, String>,
    duplicated: Option<String>,
    /// Every `resource` value, in order: RFC 8707 §2 lets it repeat.
    resources: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(text: &str) -> Result<Params, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).map_err(|_| {
            OAuthError::new(ErrorCode::InvalidRequest, "parameters are not form-encoded")
        })?;
        let mut params = Params::default();
        for (k, v) in pairs {
            if k == "resource" {
                params.resources.push(v);
                continue;
            }
            if params.values.contains_key(&k) && params.duplicated.is_none() {
                params.duplicated = Some(k.clone());
            }
            params.values.insert(k, v);
        }
        Ok(params)
    }

    /// The name of a parameter that was sent more than once, if any.
    pub fn duplicated(&self) -> Option<&str> {
        self.duplicated.as_deref()
    }

    /// A parameter's value; empty values count as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every `resource` value sent (RFC 8707), empty ones included (they name no route).
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    pub fn require(&self, name: &str, description: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or(OAuthError::new(ErrorCode::InvalidRequest, description))
    }
}

/// Splits a `scope` parameter into its tokens; `None` when it has an invalid token.
pub fn parse_scope(text: &str) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for s in text.split(' ').filter(|s| !s.is_empty()) {
        if !crate::config::is_scope_token(s) {
            return None;
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    Some(scopes)
}

/// The scopes to grant: what was asked (or everything `allowed` when nothing was), refused
/// if anything asked is not allowed.
pub fn grant_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(text) = requested else {
        return Ok(allowed.to_vec());
    };
    let asked = parse_scope(text).ok_or(OAuthError::new(
        ErrorCode::InvalidScope,
        "the scope parameter is malformed",
    ))?;
    if asked.is_empty() {
        return Ok(allowed.to_vec());
    }
    if asked.iter().all(|s| allowed.contains(s)) {
        Ok(asked)
    } else {
        Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a requested scope is unknown or not allowed for this client",
        ))
    }
}

/// RFC 7636 §4.1: 43–128 characters from the unreserved set.
pub fn is_valid_verifier_or_challenge(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6 with S256: `BASE64URL(SHA256(verifier)) == challenge`, in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    if !is_valid_verifier_or_challenge(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Where the browser's flow may send its answer once the client's redirect URI is proven
/// registered (RFC 6749 §4.1.2.1: never to an unverified URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTarget {
    pub redirect_uri: String,
    pub state: Option<String>,
    /// The implicit grant answers in the fragment (§4.2.2).
    pub in_fragment: bool,
}

impl RedirectTarget {
    /// The redirect URI with `error`, `error_description` and `state` (§4.1.2.1, §4.2.2.1).
    pub fn error_uri(&self, error: &OAuthError) -> String {
        let mut params = vec![
            ("error", error.code.as_str()),
            ("error_description", error.description),
        ];
        if let Some(state) = &self.state {
            params.push(("state", state));
        }
        redirect_with(&self.redirect_uri, &params, self.in_fragment)
    }
}

/// Appends parameters to a redirect URI's query (or, for the implicit grant, fragment).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)], in_fragment: bool) -> String {
    let encoded = serde_urlencoded::to_string(params).unwrap_or_default();
    if in_fragment {
        format!("{redirect_uri}#{encoded}")
    } else if redirect_uri.contains('?') {
        format!("{redirect_uri}&{encoded}")
    } else {
        format!("{redirect_uri}?{encoded}")
    }
}

#[cfg(test)]
mod tests;
