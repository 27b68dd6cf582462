//! The browser side of the code and implicit flows: `/oauth/authorize` → login page →
//! consent page → redirect to the client (RFC 6749 §4.1.1–§4.1.2, §4.2.1–§4.2.2).
//!
//! The authorization request travels as the query string of every step and is validated
//! again at each one, so no half-validated state is ever stored. The login form is guarded
//! by an HMAC of the browser's signed id cookie ([`super::csrf`]), the consent form by its
//! session's CSRF token, and a session counts only in the browser it was made in.

use super::authorize::{validate, AuthorizeError, AuthorizeRequest, RedirectTarget, ResponseType};
use super::csrf::CsrfKey;
use super::pages::{self, ConsentPage, LoginPage, ScopeLine};
use super::protocol::{redirect_with, OAuthError, Params};
use super::session::{self, CookieNames, Session, CSRF_FIELD};
use super::throttle::LoginResult;
use super::token::Issue;
use super::{OAuthRequest, OAuthServer, SESSION_TTL};
use crate::body::Body;
use crate::config::GrantType;
use crate::directory::User;
use crate::secrets::random_token;
use crate::store::token_hash;
use crate::store::{Record, RecordKind, RecordState};
use http::header::{HeaderValue, CACHE_CONTROL, LOCATION, SET_COOKIE};
use http::{Response, StatusCode};

const NEUTRAL_FAILURE: &str = "The username or password is not right.";
const UNAVAILABLE: &str =
    "The sign-in service is unavailable right now. Please try again in a few minutes.";

impl OAuthServer {
    pub(super) async fn authorize(&self, req: &OAuthRequest) -> Response<Body> {
        if let Err(response) = self.validated(req) {
            return *response;
        }
        match self.session(req).await {
            Ok(Some(_)) => redirect(&format!("/oauth/consent?{}", req.query)),
            Ok(None) => redirect(&format!("/oauth/login?{}", req.query)),
            Err(response) => *response,
        }
    }

    pub(super) async fn login_page(&self, req: &OAuthRequest) -> Response<Body> {
        let ar = match self.validated(req) {
            Ok(ar) => ar,
            Err(response) => return *response,
        };
        match self.session(req).await {
            Ok(Some(_)) => redirect(&format!("/oauth/consent?{}", req.query)),
            Ok(None) => self.render_login(req, &ar, StatusCode::OK, "", None).await,
            Err(response) => *response,
        }
    }

    pub(super) async fn login_submit(&self, req: &OAuthRequest) -> Response<Body> {
        let ar = match self.validated(req) {
            Ok(ar) => ar,
            Err(response) => return *response,
        };
        let form = match super::token::form_params(req) {
            Ok(f) => f,
            Err(_) => return bad_form(),
        };
        // The field must be this browser's, derived from a cookie this server issued.
        let (key, browser) = match self.browser(req).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let Some(browser) = browser.filter(|id| key.field_matches(id, form.get(CSRF_FIELD))) else {
            return csrf_refused();
        };
        let username = form.get("username").unwrap_or("");
        let password = form.get("password").unwrap_or("");
        let (status, message) = match self.check_password(username, password, &req.peer).await {
            LoginResult::Success(user) => return self.start_session(req, &user, &browser).await,
            LoginResult::Failure | LoginResult::Throttled => (StatusCode::OK, NEUTRAL_FAILURE),
            LoginResult::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE),
        };
        self.render_login(req, &ar, status, username, Some(message))
            .await
    }

    /// Creates a session bound to `browser` and sends the browser on to the consent page.
    async fn start_session(
        &self,
        req: &OAuthRequest,
        user: &User,
        browser: &str,
    ) -> Response<Body> {
        let now = self.now();
        let id =
            match session::create(&*self.store, user, browser, now, SESSION_TTL.as_secs()).await {
                Ok(id) => id,
                Err(e) => return unavailable_page(&e),
            };
        let mut response = see_other(&format!("/oauth/consent?{}", req.query));
        response.headers_mut().append(
            SET_COOKIE,
            session::set_cookie(self.cookie_names(req).session, &id, self.secure(req)),
        );
        response
    }

    pub(super) async fn consent_page(&self, req: &OAuthRequest) -> Response<Body> {
        let ar = match self.validated(req) {
            Ok(ar) => ar,
            Err(response) => return *response,
        };
        let session = match self.session(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return redirect(&format!("/oauth/login?{}", req.query)),
            Err(response) => return *response,
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
        pages::render(
            StatusCode::OK,
            &page,
            pages::origin_of(&ar.redirect_uri).as_deref(),
        )
    }

    pub(super) async fn consent_submit(&self, req: &OAuthRequest) -> Response<Body> {
        let ar = match self.validated(req) {
            Ok(ar) => ar,
            Err(response) => return *response,
        };
        let session = match self.session(req).await {
            Ok(Some(s)) => s,
            Ok(None) => return see_other(&format!("/oauth/login?{}", req.query)),
            Err(response) => return *response,
        };
        let Ok(form) = super::token::form_params(req) else {
            return bad_form();
        };
        if !session::csrf_matches(form.get(CSRF_FIELD), &session.csrf) {
            return csrf_refused();
        }
        let to = target(&ar);
        match form.get("decision") {
            Some("approve") => self.approve(&ar, &session, to).await,
            Some("deny") => redirect(&redirect_error(
                &to,
                &OAuthError::new(
                    super::protocol::ErrorCode::AccessDenied,
                    "the user denied the request",
                ),
            )),
            _ => bad_form(),
        }
    }

    pub(super) async fn logout(&self, req: &OAuthRequest) -> Response<Body> {
        let names = self.cookie_names(req);
        if let Some(id) = session::cookie(&req.headers, names.session) {
            if let Err(e) = self.store.delete(token_hash(id)).await {
                return unavailable_page(&e);
            }
        }
        let mut response = match self.validated(req) {
            Ok(_) => redirect(&format!("/oauth/login?{}", req.query)),
            Err(_) => pages::error(StatusCode::OK, "Signed out", "You are signed out."),
        };
        response.headers_mut().append(
            SET_COOKIE,
            session::clear_cookie(names.session, self.secure(req)),
        );
        response
    }

    /// Issues a code (or, for the implicit grant, a token) and redirects to the client.
    async fn approve(
        &self,
        ar: &AuthorizeRequest,
        session: &Session,
        to: RedirectTarget,
    ) -> Response<Body> {
        let client = match self.client(&ar.client_id) {
            Some(c) => c,
            None => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "Unknown application",
                    "The application is not registered here.",
                )
            }
        };
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
            return match self.issue(issue).await {
                Ok(t) => {
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
                    redirect(&redirect_with(&to.redirect_uri, &params, true))
                }
                Err(e) => redirect(&redirect_error(&to, &e)),
            };
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
        if let Err(e) = self.store.insert(token_hash(&code), record).await {
            return unavailable_page(&e);
        }
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = &to.state {
            params.push(("state", state));
        }
        redirect(&redirect_with(&to.redirect_uri, &params, false))
    }

    /// Validates the authorization request in the query; errors become a page or a redirect.
    fn validated(&self, req: &OAuthRequest) -> Result<AuthorizeRequest, Box<Response<Body>>> {
        let params = Params::parse(&req.query).map_err(|_| {
            Box::new(pages::error(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The request is malformed.",
            ))
        })?;
        let allow_implicit = self.settings.allow_implicit;
        validate(
            &params,
            |id| self.client(id),
            allow_implicit,
            &self.resources,
        )
        .map_err(|e| {
            Box::new(match e {
                AuthorizeError::Page(message) => {
                    pages::error(StatusCode::BAD_REQUEST, "Invalid request", message)
                }
                AuthorizeError::Redirect { to, error } => redirect(&redirect_error(&to, &error)),
            })
        })
    }

    /// The login session of this browser, if it has one.
    async fn session(&self, req: &OAuthRequest) -> Result<Option<Session>, Box<Response<Body>>> {
        let (_, browser) = self.browser(req).await?;
        let names = self.cookie_names(req);
        session::load(
            &*self.store,
            &req.headers,
            names,
            browser.as_deref(),
            self.now(),
        )
        .await
        .map_err(|e| Box::new(unavailable_page(&e)))
    }

    /// The CSRF key, and this browser's id if its cookie is one this server issued.
    async fn browser(
        &self,
        req: &OAuthRequest,
    ) -> Result<(&CsrfKey, Option<String>), Box<Response<Body>>> {
        let key = self
            .csrf_key()
            .await
            .map_err(|e| Box::new(unavailable_page(&e)))?;
        let id = session::cookie(&req.headers, self.cookie_names(req).browser)
            .and_then(|c| key.browser_id(c))
            .map(str::to_string);
        Ok((key, id))
    }

    /// The login page, its hidden field derived from this browser's id (a new id, and its
    /// cookie, when the browser has none this server issued).
    async fn render_login(
        &self,
        req: &OAuthRequest,
        ar: &AuthorizeRequest,
        status: StatusCode,
        username: &str,
        message: Option<&str>,
    ) -> Response<Body> {
        let (key, existing) = match self.browser(req).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let (id, new_cookie) = match existing {
            Some(id) => (id, None),
            None => {
                let (id, cookie) = key.mint();
                (id, Some(cookie))
            }
        };
        let page = LoginPage {
            client_name: &ar.client_name,
            action: &format!("/oauth/login?{}", req.query),
            csrf: &key.field(&id),
            username,
            message,
        };
        let mut response = pages::render(status, &page, None);
        if let Some(cookie) = new_cookie {
            response.headers_mut().append(
                SET_COOKIE,
                session::set_cookie(self.cookie_names(req).browser, &cookie, self.secure(req)),
            );
        }
        response
    }

    fn secure(&self, req: &OAuthRequest) -> bool {
        req.secure || self.settings.issuer.starts_with("https://")
    }

    fn cookie_names(&self, req: &OAuthRequest) -> CookieNames {
        CookieNames::new(self.secure(req))
    }
}

fn target(ar: &AuthorizeRequest) -> RedirectTarget {
    RedirectTarget {
        redirect_uri: ar.redirect_uri.clone(),
        state: ar.state.clone(),
        in_fragment: ar.response_type == ResponseType::Token,
    }
}

/// The redirect URI with `error`, `error_description` and `state` (§4.1.2.1).
fn redirect_error(to: &RedirectTarget, error: &OAuthError) -> String {
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description),
    ];
    if let Some(state) = &to.state {
        params.push(("state", state));
    }
    redirect_with(&to.redirect_uri, &params, to.in_fragment)
}

fn redirect(location: &str) -> Response<Body> {
    redirect_with_status(StatusCode::FOUND, location)
}

/// 303 after a form POST, so the browser follows with a GET.
fn see_other(location: &str) -> Response<Body> {
    redirect_with_status(StatusCode::SEE_OTHER, location)
}

fn redirect_with_status(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn csrf_refused() -> Response<Body> {
    pages::error(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form expired or came from another page. Go back to the application and start again.",
    )
}

fn bad_form() -> Response<Body> {
    pages::error(
        StatusCode::BAD_REQUEST,
        "Invalid request",
        "The form was not filled in as expected.",
    )
}

fn unavailable_page(e: &crate::store::StoreError) -> Response<Body> {
    super::token::log_store_error(e);
    pages::error(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", UNAVAILABLE)
}
