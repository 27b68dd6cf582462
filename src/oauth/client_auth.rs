//! Client authentication at the token, revoke and introspection endpoints (RFC 6749
//! §2.3.1): `Authorization: Basic` or `client_id`/`client_secret` in the form, never both;
//! public clients present only `client_id`. Secrets are checked against their hashes
//! (argon2 on the blocking pool). A failure is `invalid_client`, and an audit line.

use super::protocol::{ErrorCode, OAuthError, Params};
use super::{OAuthRequest, OAuthServer};
use crate::config::ClientConfig;
use crate::secrets::{secret_hash_kind, verify_secret, SecretHashKind};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderMap, AUTHORIZATION};

/// How a client authenticated at the token, revoke or introspection endpoint.
pub struct AuthenticatedClient<'a> {
    pub client: &'a ClientConfig,
}

// === impl OAuthServer ===

impl OAuthServer {
    /// RFC 6749 §2.3.1: Basic (form-encoded id and secret) or `client_id`/`client_secret`
    /// in the body, never both. Public clients present only `client_id`.
    async fn authenticate_client(
        &self,
        req: &OAuthRequest,
        form: &Params,
    ) -> Result<AuthenticatedClient<'_>, OAuthError> {
        let basic = basic_credentials(&req.headers)?;
        let (id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(_), _, Some(_)) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "use one client authentication method",
                ))
            }
            (Some((id, _)), Some(form_id), None) if form_id != id => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "client_id differs from the Basic credentials",
                ))
            }
            (Some((id, secret)), _, None) => (id, Some(secret)),
            (None, Some(id), secret) => (id.to_string(), secret.map(str::to_string)),
            (None, None, _) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidClient,
                    "client authentication is required",
                ))
            }
        };
        let bad = || {
            crate::audit::invalid_client(&id, &req.peer);
            OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
        };
        let client = self.client(&id).ok_or_else(bad)?;
        match (&client.secret_hash, secret) {
            (None, None) => Ok(AuthenticatedClient { client }),
            (Some(hash), Some(secret)) if self.secret_ok(&secret, hash).await => {
                Ok(AuthenticatedClient { client })
            }
            _ => Err(bad()),
        }
    }

    /// The common start of the token, revoke and introspection endpoints: parse the form,
    /// authenticate the client, refuse repeated parameters (RFC 6749 §3.2).
    pub(super) async fn client_form(
        &self,
        req: &OAuthRequest,
    ) -> Result<(AuthenticatedClient<'_>, Params), OAuthError> {
        let form = req.form_params()?;
        let authed = self.authenticate_client(req, &form).await?;
        if form.duplicated().is_some() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "a parameter was sent more than once",
            ));
        }
        Ok((authed, form))
    }

    /// Checks a client secret; argon2 hashes run on the blocking pool.
    async fn secret_ok(&self, secret: &str, hash: &str) -> bool {
        match secret_hash_kind(hash) {
            Some(SecretHashKind::Sha256) => verify_secret(secret, hash),
            Some(SecretHashKind::Argon2) => {
                let (secret, hash) = (secret.to_string(), hash.to_string());
                tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        }
    }
}

/// Decodes `Authorization: Basic` into a form-decoded (id, secret) pair (RFC 6749 §2.3.1);
/// `Ok(None)` without the header. Public for the fuzz target `basic_credentials`.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = OAuthError::new(ErrorCode::InvalidClient, "malformed Basic credentials");
    let text = value.to_str().map_err(|_| bad.clone())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(bad);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad.clone())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad.clone())?;
    let (id, secret) = decoded.split_once(':').ok_or(bad.clone())?;
    let id = form_decode(id).ok_or(bad.clone())?;
    let secret = form_decode(secret).ok_or(bad)?;
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value (RFC 6749 §2.3.1).
fn form_decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}
