//! Validation of an authorization request (RFC 6749 §4.1.1, §4.2.1; RFC 7636 §4.3). Pure:
//! no IO, no hyper types.
//!
//! The order matters for safety: the client and its redirect URI are proven first, and
//! until they are, every error is an HTML page; only afterwards may an error travel to the
//! client by redirect (§4.1.2.1 — never redirect to an unverified URI).

use crate::config::{ClientConfig, GrantType};
use crate::oauth::protocol::{
    grant_scopes, is_valid_verifier_or_challenge, ErrorCode, OAuthError, Params, RedirectTarget,
};
use crate::oauth::resource::Resources;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Code,
    Token,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub client_name: String,
    /// The redirect URI to use (the registered one when the request named none).
    pub redirect_uri: String,
    /// Whether the request named it (then the token request must repeat it, §4.1.3).
    pub redirect_uri_given: bool,
    pub response_type: ResponseType,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    /// RFC 8707 resources asked for (each a protected route's); the tokens' `aud`.
    pub audiences: Vec<String>,
}

impl AuthorizeRequest {
    /// Where this (validated) request's answer goes.
    pub fn target(&self) -> RedirectTarget {
        RedirectTarget {
            redirect_uri: self.redirect_uri.clone(),
            state: self.state.clone(),
            in_fragment: self.response_type == ResponseType::Token,
        }
    }
}

/// Why an authorization request was refused, and how to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI is not proven: show an error page, never redirect.
    Page(&'static str),
    /// Tell the client through its (registered) redirect URI.
    Redirect {
        to: RedirectTarget,
        error: OAuthError,
    },
}

/// Validates `params` against the registered clients.
pub fn validate<'c>(
    params: &Params,
    find_client: impl Fn(&str) -> Option<&'c ClientConfig>,
    allow_implicit: bool,
    resources: &Resources,
) -> Result<AuthorizeRequest, AuthorizeError> {
    if matches!(
        params.duplicated(),
        Some("client_id") | Some("redirect_uri")
    ) {
        return Err(AuthorizeError::Page(
            "The request repeats client_id or redirect_uri.",
        ));
    }
    let client_id = params.get("client_id").ok_or(AuthorizeError::Page(
        "The request names no client (client_id).",
    ))?;
    let client = find_client(client_id).ok_or(AuthorizeError::Page(
        "The application is not registered here.",
    ))?;
    let (redirect_uri, redirect_uri_given) = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_string(), true),
        Some(_) => {
            return Err(AuthorizeError::Page(
                "The redirect URI is not registered for this application.",
            ))
        }
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => {
            return Err(AuthorizeError::Page(
                "The request names no redirect URI (redirect_uri).",
            ))
        }
    };
    let response_type = params.get("response_type");
    let to = RedirectTarget {
        redirect_uri: redirect_uri.clone(),
        state: params.get("state").map(str::to_string),
        in_fragment: response_type == Some("token"),
    };
    let fail = |code, description| AuthorizeError::Redirect {
        to: to.clone(),
        error: OAuthError::new(code, description),
    };
    if params.duplicated().is_some() {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "a parameter was sent more than once",
        ));
    }
    let response_type = match response_type {
        Some("code") if client.grant_types.contains(&GrantType::AuthorizationCode) => {
            ResponseType::Code
        }
        Some("code") => {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                "this client may not use the code flow",
            ))
        }
        Some("token") if !allow_implicit => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "the implicit grant is switched off",
            ))
        }
        Some("token") if client.grant_types.contains(&GrantType::Implicit) => ResponseType::Token,
        Some("token") => {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                "this client may not use the implicit grant",
            ))
        }
        Some(_) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "response_type must be code",
            ))
        }
        None => return Err(fail(ErrorCode::InvalidRequest, "response_type is required")),
    };
    let scopes = grant_scopes(params.get("scope"), &client.scopes).map_err(|error| {
        AuthorizeError::Redirect {
            to: to.clone(),
            error,
        }
    })?;
    if scopes.is_empty() {
        return Err(fail(
            ErrorCode::InvalidScope,
            "no scope was requested and the client has none",
        ));
    }
    let audiences =
        resources
            .audiences(params.resources())
            .map_err(|error| AuthorizeError::Redirect {
                to: to.clone(),
                error,
            })?;
    let code_challenge = match response_type {
        ResponseType::Code => {
            pkce_challenge(params, client.secret_hash.is_none()).map_err(|error| {
                AuthorizeError::Redirect {
                    to: to.clone(),
                    error,
                }
            })?
        }
        ResponseType::Token => None,
    };
    Ok(AuthorizeRequest {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_uri,
        redirect_uri_given,
        response_type,
        scopes,
        state: to.state.clone(),
        code_challenge,
        audiences,
    })
}

/// RFC 7636 §4.3 with S256 only; a public client must use PKCE.
fn pkce_challenge(params: &Params, public_client: bool) -> Result<Option<String>, OAuthError> {
    let challenge = params.get("code_challenge");
    let method = params.get("code_challenge_method");
    match (challenge, method) {
        (None, None) if public_client => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "public clients must use PKCE (code_challenge with S256)",
        )),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge is missing",
        )),
        (Some(_), Some(m)) if m != "S256" => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256 (plain is not supported)",
        )),
        (Some(_), None) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge_method must be S256 (plain is not supported)",
        )),
        (Some(c), Some(_)) if !is_valid_verifier_or_challenge(c) => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "code_challenge is malformed",
        )),
        (Some(c), Some(_)) => Ok(Some(c.to_string())),
    }
}

#[cfg(test)]
mod tests;
