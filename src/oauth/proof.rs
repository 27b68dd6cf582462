//! The DPoP proof of a token request (RFC 9449 §5): checked before any grant is looked at,
//! its `jti` spent once, and its key thumbprint handed to the grant to bind the tokens to.
//!
//! The proof's `htu` must be the token endpoint: the one the metadata advertises
//! (`<issuer>/oauth/token`), or the URL the request was actually sent to (scheme and
//! authority of this connection), for clients that were configured with an address of
//! their own.

use super::error::store_error;
use super::protocol::{ErrorCode, OAuthError};
use super::{OAuthRequest, OAuthServer};
use crate::config::{ClientConfig, DpopMode};
use crate::dpop::{self, htu, Expected, Spent};

/// The path of the token endpoint, the end of every `htu` a token request's proof may have.
const TOKEN_PATH: &str = "/oauth/token";

const MISSING: OAuthError = OAuthError::new(
    ErrorCode::InvalidDpopProof,
    "this client must send a DPoP proof with its token requests",
);
const INVALID: OAuthError = OAuthError::new(
    ErrorCode::InvalidDpopProof,
    "the DPoP proof is invalid (typ, alg, jwk, signature, htm, htu, iat or jti)",
);
const REPLAYED: OAuthError = OAuthError::new(
    ErrorCode::InvalidDpopProof,
    "the DPoP proof was used before",
);

impl OAuthServer {
    /// The thumbprint of the key a token request proved it holds; `None` without a proof
    /// (refused for a client with `dpop = "required"`).
    pub(super) async fn proof_key(
        &self,
        req: &OAuthRequest,
        client: &ClientConfig,
    ) -> Result<Option<String>, OAuthError> {
        let mut values = req.headers.get_all("dpop").iter();
        let Some(value) = values.next() else {
            return match client.dpop {
                DpopMode::Required => Err(MISSING),
                DpopMode::Optional => Ok(None),
            };
        };
        if values.next().is_some() {
            return Err(INVALID);
        }
        let text = value.to_str().map_err(|_| INVALID)?;
        let now = self.now();
        let proof = self.token_endpoint_urls(req).find_map(|url| {
            let expected = Expected {
                method: "POST",
                htu: &url,
                access_token: None,
                now,
            };
            dpop::check(text, &expected).ok()
        });
        let proof = proof.ok_or_else(|| {
            tracing::debug!("token request with an invalid DPoP proof");
            INVALID
        })?;
        match self
            .proof_ids
            .spend(proof.replay_key(), proof.forget_at(), now)
            .await
        {
            Spent::First => Ok(Some(proof.jkt)),
            Spent::Replayed => Err(REPLAYED),
            Spent::Full => Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many DPoP proofs to remember; try again later",
            )),
            Spent::Store(e) => Err(store_error(e)),
        }
    }

    /// The normal forms of the URLs a proof's `htu` may name (see the module comment).
    fn token_endpoint_urls(&self, req: &OAuthRequest) -> impl Iterator<Item = String> {
        let advertised = htu::normalise(&format!("{}{TOKEN_PATH}", self.settings.issuer));
        let scheme = if req.secure { "https" } else { "http" };
        let actual = req
            .authority
            .as_deref()
            .and_then(|authority| htu::of_request(scheme, authority, TOKEN_PATH));
        let actual = actual.filter(|a| Some(a) != advertised.as_ref());
        advertised.into_iter().chain(actual)
    }
}

/// The `token_type` of a token bound to `jkt`, or of a bearer token.
pub(super) fn token_type(jkt: Option<&str>) -> &'static str {
    match jkt {
        Some(_) => "DPoP",
        None => "Bearer",
    }
}
