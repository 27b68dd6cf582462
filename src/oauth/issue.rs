//! Issuing tokens for a grant, whichever endpoint decided it: the token endpoint (every
//! grant) and the consent page (the implicit grant). The access token is random or an
//! RFC 9068 JWT; either way the store keeps its record under the token's hash, so
//! introspection and revocation treat both formats alike. Also revoking a whole grant,
//! which reuse detection, revocation and a vanished user all come to.

use super::error::store_error;
use super::protocol::{ErrorCode, OAuthError};
use super::OAuthServer;
use crate::config::{ClientConfig, DpopMode, GrantType, TokenFormat};
use crate::jwt::claims::Confirmation;
use crate::jwt::{AccessClaims, TYP_AT_JWT};
use crate::secrets::random_token;
use crate::store::token_hash;
use crate::store::{Record, RecordKind, RecordState};
use serde::Serialize;

/// What to issue for one successful grant.
pub(super) struct Issue<'a> {
    pub grant_type: GrantType,
    pub grant_id: String,
    pub client: &'a ClientConfig,
    pub sub: String,
    pub username: Option<String>,
    /// Scopes of the access token.
    pub scopes: Vec<String>,
    /// `Some` to issue a refresh token carrying these (the grant's full) scopes.
    pub refresh_scopes: Option<Vec<String>>,
    /// The scope the client asked for, to decide whether `scope` must be echoed.
    pub requested_scope: Option<String>,
    /// The grant's absolute end: no token issued here lives past it.
    pub grant_expires_at: u64,
    /// RFC 8707 resources of the access token (its `aud`; empty: the issuer).
    pub audiences: Vec<String>,
    /// Resources of the grant, which a refresh token carries (a refresh may narrow them
    /// for its access token, never widen them).
    pub grant_audiences: Vec<String>,
    /// RFC 9449: the DPoP key (thumbprint) the tokens are bound to, from the request's proof.
    pub jkt: Option<String>,
}

/// RFC 6749 §5.1 success body.
#[derive(Debug, Serialize)]
pub(super) struct TokenAnswer {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

// === impl OAuthServer ===

impl OAuthServer {
    /// Stores and returns an access token (and a refresh token when asked).
    pub(super) async fn issue(&self, issue: Issue<'_>) -> Result<TokenAnswer, OAuthError> {
        // RFC 9449: a client with `dpop = "required"` never holds an unbound token.
        if issue.client.dpop == DpopMode::Required && issue.jkt.is_none() {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this client must send a DPoP proof with its token requests",
            ));
        }
        let now = self.now();
        let ends = issue.grant_expires_at;
        let access_expires_at = (now + self.settings.access_token_ttl.as_secs()).min(ends);
        let base_sub = issue.sub.clone();
        let base = Record {
            kind: RecordKind::Access,
            state: RecordState::Active,
            grant_id: issue.grant_id,
            client_id: issue.client.id.clone(),
            sub: issue.sub,
            username: issue.username,
            scopes: issue.scopes.clone(),
            issued_at: now,
            expires_at: access_expires_at,
            grant_expires_at: ends,
            redirect_uri: None,
            code_challenge: None,
            name: None,
            email: None,
            csrf: None,
            browser: None,
            audiences: issue.audiences,
            jkt: issue.jkt,
        };
        let access_token = self.new_access_token(&base)?;
        let refresh_token = match issue.refresh_scopes {
            Some(scopes) => {
                let token = random_token();
                let record = Record {
                    kind: RecordKind::Refresh,
                    scopes,
                    audiences: issue.grant_audiences,
                    expires_at: (now + self.settings.refresh_token_ttl.as_secs()).min(ends),
                    ..base.clone()
                };
                self.store
                    .insert(token_hash(&token), record)
                    .await
                    .map_err(store_error)?;
                Some(token)
            }
            None => None,
        };
        let base_jkt = base.jkt.clone();
        self.store
            .insert(token_hash(&access_token), base)
            .await
            .map_err(store_error)?;
        self.metrics
            .tokens_issued
            .with_label_values(&[issue.grant_type.as_str()])
            .inc();
        let granted = issue.scopes.join(" ");
        crate::audit::token_issued(
            issue.grant_type.as_str(),
            &issue.client.id,
            &base_sub,
            &granted,
            refresh_token.is_some(),
        );
        let echo_scope =
            issue.requested_scope.as_deref().map(normalise_scope_text) != Some(granted.clone());
        Ok(TokenAnswer {
            access_token,
            token_type: super::proof::token_type(base_jkt.as_deref()),
            expires_in: access_expires_at.saturating_sub(now),
            refresh_token,
            scope: echo_scope.then_some(granted),
        })
    }

    /// Revokes the grant of `record` for `reason` (an audit line says so).
    pub(super) async fn revoke_grant_for(&self, reason: &str, record: &Record) {
        crate::audit::grant_revoked(reason, &record.client_id, &record.sub);
        self.revoke_grant(&record.grant_id).await;
    }

    /// A new access token for `record`: random, or an RFC 9068 JWT of its claims. Either way
    /// the store keeps the record under the token's hash, so introspection and revocation
    /// treat both formats alike.
    fn new_access_token(&self, record: &Record) -> Result<String, OAuthError> {
        let keys = match &self.settings.token_format {
            TokenFormat::Opaque => return Ok(random_token()),
            TokenFormat::Jwt(keys) => keys,
        };
        let claims = AccessClaims {
            iss: &self.settings.issuer,
            sub: &record.sub,
            aud: self.audience(record),
            client_id: &record.client_id,
            scope: record.scopes.join(" "),
            iat: record.issued_at,
            exp: record.expires_at,
            jti: random_token(),
            username: record.username.as_deref(),
            cnf: record.jkt.as_deref().map(|jkt| Confirmation { jkt }),
        };
        crate::jwt::compact::sign(&keys.current, TYP_AT_JWT, &claims).map_err(|e| {
            tracing::error!(error = %crate::error::error_chain(&e), "cannot sign an access token");
            OAuthError::new(
                ErrorCode::ServerError,
                "the access token could not be signed",
            )
        })
    }

    /// The `aud` of an access token (its JWT claim, its `/verify` answer): the RFC 8707
    /// resources it was issued for, one as a string and several as an array, or the issuer
    /// when it named none (RFC 8707 §2).
    pub(super) fn audience(&self, record: &Record) -> serde_json::Value {
        match record.audiences.as_slice() {
            [] => serde_json::json!(self.settings.issuer),
            [one] => serde_json::json!(one),
            many => serde_json::json!(many),
        }
    }

    /// Revokes a grant; the store's feed takes the revocation to the guards.
    pub(super) async fn revoke_grant(&self, grant_id: &str) {
        if let Err(e) = self.store.revoke_grant(grant_id).await {
            tracing::error!(error = %e, "cannot revoke a grant");
        }
    }
}

fn normalise_scope_text(s: &str) -> String {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
