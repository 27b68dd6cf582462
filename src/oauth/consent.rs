//! `GET,POST /oauth/consent`: the consent page (the client by name, each scope with its
//! consent text) and its form, guarded by the session's CSRF token. Approval redirects to
//! the client with a code (RFC 6749 §4.1.2) or, for the implicit grant, a token (§4.2.2);
//! denial with `access_denied`.

use super::authorize::{AuthorizeRequest, ResponseType};
use super::error::{EndpointError, PageError};
use super::issue::Issue;
use super::pages::{self, ConsentPage, ScopeLine};
use super::protocol::{redirect_with, ErrorCode, OAuthError, RedirectTarget};
use super::session::{self, Session, CSRF_FIELD};
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use crate::config::GrantType;
use crate::secrets::random_token;
use crate::store::token_hash;
use crate::store::{Record, RecordKind, RecordState};
use http::{Response, StatusCode};

impl OAuthServer {
    pub(super) async fn consent_page(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        let ar = self.authorization_request(req)?;
        let Some(session) = self.session(req).await? else {
            return Ok(pages::redirect(&format!("/oauth/login?{}", req.query)));
        };
        let scopes = ar
            .scopes
            .iter()
            .map(|s| ScopeLine {
                name: s,
                text: self
                    .settings
                    .scopes
                    .get(s)
                    .map_or(s.as_str(), String::as_str),
            })
            .collect();
        let user_label = match &session.user.name {
            Some(name) => format!("{name} ({})", session.user.username),
            None => session.user.username.clone(),
        };
        let page = ConsentPage {
            client_name: &ar.client_name,
            user_label: &user_label,
            scopes,
            action: &format!("/oauth/consent?{}", req.query),
            csrf: &session.csrf,
            logout_url: &format!("/oauth/logout?{}", req.query),
        };
        Ok(pages::render(
            StatusCode::OK,
            &page,
            pages::origin_of(&ar.redirect_uri).as_deref(),
        ))
    }

    pub(super) async fn consent_submit(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        let ar = self.authorization_request(req)?;
        let Some(session) = self.session(req).await? else {
            return Ok(pages::see_other(&format!("/oauth/login?{}", req.query)));
        };
        let form = req.form_params().map_err(|_| PageError::BadForm)?;
        if !session::csrf_matches(form.get(CSRF_FIELD), &session.csrf) {
            return Err(PageError::FormExpired.into());
        }
        let to = ar.target();
        match form.get("decision") {
            Some("approve") => self.approve(&ar, &session, to).await,
            Some("deny") => Err(EndpointError::Redirect {
                to,
                error: OAuthError::new(ErrorCode::AccessDenied, "the user denied the request"),
            }),
            _ => Err(PageError::BadForm.into()),
        }
    }

    /// Issues a code (or, for the implicit grant, a token) and redirects to the client.
    async fn approve(
        &self,
        ar: &AuthorizeRequest,
        session: &Session,
        to: RedirectTarget,
    ) -> Result<Response<Body>, EndpointError> {
        let client = self.client(&ar.client_id).ok_or(PageError::UnknownClient)?;
        let user = &session.user;
        if ar.response_type == ResponseType::Token {
            let issue = Issue {
                grant_type: GrantType::Implicit,
                grant_id: random_token(),
                client,
                sub: user.username.clone(),
                username: Some(user.username.clone()),
                scopes: ar.scopes.clone(),
                refresh_scopes: None,
                requested_scope: None,
                grant_expires_at: self.new_grant_end(),
                audiences: ar.audiences.clone(),
                grant_audiences: ar.audiences.clone(),
                // A redirect carries no DPoP proof.
                jkt: None,
            };
            let t = match self.issue(issue).await {
                Ok(t) => t,
                Err(error) => return Err(EndpointError::Redirect { to, error }),
            };
            let expires_in = t.expires_in.to_string();
            let scope = ar.scopes.join(" ");
            let mut params = vec![
                ("access_token", t.access_token.as_str()),
                ("token_type", "Bearer"),
                ("expires_in", expires_in.as_str()),
                ("scope", scope.as_str()),
            ];
            if let Some(state) = &to.state {
                params.push(("state", state));
            }
            return Ok(pages::redirect(&redirect_with(
                &to.redirect_uri,
                &params,
                true,
            )));
        }
        let code = random_token();
        let now = self.now();
        let record = Record {
            kind: RecordKind::Code,
            state: RecordState::Active,
            grant_id: random_token(),
            client_id: ar.client_id.clone(),
            sub: user.username.clone(),
            username: Some(user.username.clone()),
            scopes: ar.scopes.clone(),
            issued_at: now,
            expires_at: (now + self.settings.code_ttl.as_secs()).min(self.new_grant_end()),
            // The grant's clock starts now, when the user authorized.
            grant_expires_at: self.new_grant_end(),
            redirect_uri: ar.redirect_uri_given.then(|| ar.redirect_uri.clone()),
            code_challenge: ar.code_challenge.clone(),
            name: None,
            email: None,
            csrf: None,
            browser: None,
            audiences: ar.audiences.clone(),
            jkt: None,
        };
        self.store
            .insert(token_hash(&code), record)
            .await
            .map_err(PageError::Unavailable)?;
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &to.state {
            params.push(("state", state));
        }
        Ok(pages::redirect(&redirect_with(
            &to.redirect_uri,
            &params,
            false,
        )))
    }
}
