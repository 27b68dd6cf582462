//! `POST /oauth/token` (RFC 6749 §4.1.3, §4.3, §4.4, §6; RFC 7636 §4.6; RFC 9700 §2.2.2).
//!
//! Codes and refresh tokens are single-use: the store's atomic `consume` decides the one
//! winner, and a second use revokes the whole grant (what the first use issued included).
//!
//! A user's grant lives only as long as the user and the grant's absolute end: a code
//! exchange and every refresh ask the directory again whether the user still exists
//! (gone: `invalid_grant` and the grant revoked; directory unreachable: 503
//! `temporarily_unavailable`, nothing spent, nothing issued), and no token outlives the
//! grant's end (`[oauth] grant_max_lifetime` after the user authorized), however often the
//! refresh token rotates.

use super::client_auth::AuthenticatedClient;
use super::error::{store_error, EndpointError};
use super::issue::{Issue, TokenAnswer};
use super::protocol::{grant_scopes, pkce_matches, ErrorCode, OAuthError, Params};
use super::throttle::LoginResult;
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use crate::config::{ClientConfig, GrantType};
use crate::error::json_response;
use crate::secrets::random_token;
use crate::store::token_hash;
use crate::store::{Record, RecordKind, RecordState};
use http::header::{HeaderValue, PRAGMA};
use http::{Response, StatusCode};

const INVALID_GRANT: OAuthError = OAuthError::new(
    ErrorCode::InvalidGrant,
    "the grant is invalid, expired, revoked or was issued to another client",
);

impl OAuthServer {
    pub(super) async fn token(&self, req: &OAuthRequest) -> Result<Response<Body>, EndpointError> {
        let answer = async {
            let (authed, form) = self.client_form(req).await?;
            let jkt = self.proof_key(req, authed.client).await?;
            self.grant(&authed, &form, &req.peer, jkt).await
        }
        .await
        .map_err(|error| {
            self.metrics
                .token_endpoint_errors
                .with_label_values(&[error.code.as_str()])
                .inc();
            req.protocol_error(error)
        })?;
        let mut response = json_response(
            StatusCode::OK,
            serde_json::to_string(&answer).unwrap_or_default(),
        );
        response
            .headers_mut()
            .insert(PRAGMA, HeaderValue::from_static("no-cache"));
        Ok(response)
    }

    async fn grant(
        &self,
        authed: &AuthenticatedClient<'_>,
        form: &Params,
        peer: &str,
        jkt: Option<String>,
    ) -> Result<TokenAnswer, OAuthError> {
        let client = authed.client;
        let grant_type = form.require("grant_type", "grant_type is required")?;
        let grant = GrantType::parse(grant_type)
            .filter(|g| *g != GrantType::Implicit)
            .ok_or(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            ))?;
        if grant == GrantType::Password && !self.settings.allow_password_grant {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "the password grant is switched off",
            ));
        }
        if !client.grant_types.contains(&grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            ));
        }
        // The single-use record a code or refresh exchange consumed, checked again below.
        let consumed = match grant {
            GrantType::AuthorizationCode => form.get("code").map(token_hash),
            GrantType::RefreshToken => form.get("refresh_token").map(token_hash),
            GrantType::ClientCredentials | GrantType::Password | GrantType::Implicit => None,
        };
        let issue = match grant {
            GrantType::AuthorizationCode => self.exchange_code(client, form).await?,
            GrantType::RefreshToken => self.refresh(client, form, jkt.as_deref()).await?,
            GrantType::ClientCredentials => {
                let audiences = self.resources.audiences(form.resources())?;
                client_credentials(client, form, self.new_grant_end(), audiences)?
            }
            GrantType::Password => self.password(client, form, peer).await?,
            GrantType::Implicit => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    "unsupported grant_type",
                ))
            }
        };
        let grant_id = issue.grant_id.clone();
        let answer = self.issue(Issue { jkt, ..issue }).await?;
        // A replay racing this exchange may have revoked the grant between our `consume`
        // and the insert of the new tokens; if so, revoke again so they die with it. This
        // request was the first use (it alone saw the record active), so it is answered as
        // it would have been had the replay come a moment later (RFC 6749 §4.1.2: the reuse
        // is denied and what the code gave is revoked): exactly one use ever succeeds, and
        // nothing it got outlives the replay.
        if let Some(hash) = consumed {
            let record = self.store.get(hash).await.map_err(store_error)?;
            if record.is_some_and(|r| r.state == RecordState::Revoked) {
                self.revoke_grant(&grant_id).await;
            }
        }
        Ok(answer)
    }

    async fn exchange_code<'c>(
        &self,
        client: &'c ClientConfig,
        form: &Params,
    ) -> Result<Issue<'c>, OAuthError> {
        let code = form.require("code", "code is required")?;
        let hash = token_hash(code);
        let record = self.store.get(hash).await.map_err(store_error)?;
        let record = record
            .filter(|r| r.kind == RecordKind::Code)
            .ok_or(INVALID_GRANT)?;
        if record.state == RecordState::Used {
            self.revoke_grant_for("code_replay", &record).await;
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the code was already used; its tokens are revoked",
            ));
        }
        if !record.is_live(self.now()) || record.client_id != client.id {
            return Err(INVALID_GRANT);
        }
        let redirect_ok = match (&record.redirect_uri, form.get("redirect_uri")) {
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
            (None, Some(got)) => client.redirect_uris.iter().any(|r| r == got),
            (None, None) => true,
        };
        if !redirect_ok {
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "redirect_uri does not match the authorization request",
            ));
        }
        let pkce_ok = match (&record.code_challenge, form.get("code_verifier")) {
            (Some(challenge), Some(verifier)) => pkce_matches(verifier, challenge),
            // A verifier for a code issued without a challenge is a downgrade attempt.
            (None, Some(_)) | (Some(_), None) => false,
            (None, None) => true,
        };
        if !pkce_ok {
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "code_verifier does not match the code_challenge",
            ));
        }
        let audiences = self.narrowed_audiences(form, &record.audiences)?;
        self.user_still_there(&record).await?;
        let before = self.store.consume(hash).await.map_err(store_error)?;
        if before.is_none_or(|r| r.state != RecordState::Active) {
            self.revoke_grant_for("code_replay", &record).await;
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the code was already used; its tokens are revoked",
            ));
        }
        let refresh = client
            .grant_types
            .contains(&GrantType::RefreshToken)
            .then(|| record.scopes.clone());
        Ok(Issue {
            grant_type: GrantType::AuthorizationCode,
            grant_id: record.grant_id,
            client,
            sub: record.sub,
            username: record.username,
            requested_scope: None,
            scopes: record.scopes,
            refresh_scopes: refresh,
            grant_expires_at: record.grant_expires_at,
            audiences,
            grant_audiences: record.audiences,
            jkt: None,
        })
    }

    async fn refresh<'c>(
        &self,
        client: &'c ClientConfig,
        form: &Params,
        jkt: Option<&str>,
    ) -> Result<Issue<'c>, OAuthError> {
        let token = form.require("refresh_token", "refresh_token is required")?;
        let hash = token_hash(token);
        let record = self.store.get(hash).await.map_err(store_error)?;
        let record = record
            .filter(|r| r.kind == RecordKind::Refresh && r.client_id == client.id)
            .ok_or(INVALID_GRANT)?;
        if record.state == RecordState::Used {
            self.revoke_grant_for("refresh_reuse", &record).await;
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the refresh token was already used; the grant is revoked",
            ));
        }
        // The grant's end is checked on its own: a row from before grant ends existed may
        // not have its refresh token's expiry capped by it.
        if !record.is_live(self.now()) || self.now() >= record.grant_expires_at {
            return Err(INVALID_GRANT);
        }
        // RFC 9449 §5: a public client's refresh token is bound to the key its grant was
        // bound to (a confidential client proves itself by its credentials). Checked before
        // `consume`: a thief with the token but not the key cannot spend it.
        if client.secret_hash.is_none() && record.jkt.is_some() && record.jkt.as_deref() != jkt {
            return Err(OAuthError::new(
                ErrorCode::InvalidDpopProof,
                "this refresh token is bound to a DPoP key; send a proof made with that key",
            ));
        }
        let scopes = grant_scopes(form.get("scope"), &record.scopes)?;
        let audiences = self.narrowed_audiences(form, &record.audiences)?;
        // Before `consume`: a directory outage must not spend the refresh token.
        self.user_still_there(&record).await?;
        let before = self.store.consume(hash).await.map_err(store_error)?;
        if before.is_none_or(|r| r.state != RecordState::Active) {
            self.revoke_grant_for("refresh_reuse", &record).await;
            return Err(OAuthError::new(
                ErrorCode::InvalidGrant,
                "the refresh token was already used; the grant is revoked",
            ));
        }
        Ok(Issue {
            grant_type: GrantType::RefreshToken,
            grant_id: record.grant_id,
            client,
            sub: record.sub,
            username: record.username,
            requested_scope: form.get("scope").map(str::to_string),
            scopes,
            refresh_scopes: Some(record.scopes),
            grant_expires_at: record.grant_expires_at,
            audiences,
            grant_audiences: record.audiences,
            jkt: None,
        })
    }

    async fn password<'c>(
        &self,
        client: &'c ClientConfig,
        form: &Params,
        peer: &str,
    ) -> Result<Issue<'c>, OAuthError> {
        let username = form.require("username", "username is required")?;
        let password = form.require("password", "password is required")?;
        let scopes = grant_scopes(form.get("scope"), &client.scopes)?;
        let audiences = self.resources.audiences(form.resources())?;
        let user = match self.check_password(username, password, peer).await {
            LoginResult::Success(user) => user,
            LoginResult::Failure | LoginResult::Throttled => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidGrant,
                    "wrong username or password",
                ))
            }
            LoginResult::Unavailable => {
                return Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the sign-in service is unavailable",
                ))
            }
        };
        Ok(Issue {
            grant_type: GrantType::Password,
            grant_id: random_token(),
            client,
            sub: user.username.clone(),
            username: Some(user.username),
            requested_scope: form.get("scope").map(str::to_string),
            refresh_scopes: client
                .grant_types
                .contains(&GrantType::RefreshToken)
                .then(|| scopes.clone()),
            scopes,
            grant_expires_at: self.new_grant_end(),
            grant_audiences: audiences.clone(),
            audiences,
            jkt: None,
        })
    }

    /// The audiences of a token issued from a code or refresh token whose grant has
    /// `granted`: the `resource`s of this request (each a protected route's, RFC 8707 §2.2),
    /// which may only narrow a grant that named some; all of `granted` when none are sent.
    fn narrowed_audiences(
        &self,
        form: &Params,
        granted: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let asked = self.resources.audiences(form.resources())?;
        if asked.is_empty() {
            return Ok(granted.to_vec());
        }
        if !granted.is_empty() && asked.iter().any(|a| !granted.contains(a)) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource was not part of the authorization grant",
            ));
        }
        Ok(asked)
    }

    /// A user's grant may issue tokens only while the directory still knows the user.
    /// Gone: the whole grant is revoked, and the client hears only `invalid_grant`.
    async fn user_still_there(&self, record: &Record) -> Result<(), OAuthError> {
        // client_credentials grants have no user.
        let Some(username) = record.username.as_deref() else {
            return Ok(());
        };
        match self.directory.exists(username).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.revoke_grant_for("user_gone", record).await;
                Err(INVALID_GRANT)
            }
            Err(e) => {
                tracing::error!(error = %crate::error::error_chain(&e), "user directory unavailable for a token request");
                Err(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the user directory is unavailable; try again later",
                ))
            }
        }
    }
}

fn client_credentials<'c>(
    client: &'c ClientConfig,
    form: &Params,
    grant_expires_at: u64,
    audiences: Vec<String>,
) -> Result<Issue<'c>, OAuthError> {
    let scopes = grant_scopes(form.get("scope"), &client.scopes)?;
    Ok(Issue {
        grant_type: GrantType::ClientCredentials,
        grant_id: random_token(),
        client,
        sub: client.id.clone(),
        username: None,
        requested_scope: form.get("scope").map(str::to_string),
        scopes,
        refresh_scopes: None,
        grant_expires_at,
        grant_audiences: audiences.clone(),
        audiences,
        jkt: None,
    })
}
