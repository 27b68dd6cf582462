//! `GET,POST /oauth/login`: the login page of the browser's flow, and its form.
//!
//! The form is guarded by an HMAC of the browser's signed id cookie ([`super::csrf`]); a
//! right password starts a fresh session bound to that browser ([`super::session`]) and
//! sends the browser on to the consent page. A wrong password, a ban and an outage show the
//! form again: the first two with the same neutral message (see [`super::throttle`]).

use super::authorize::AuthorizeRequest;
use super::error::{EndpointError, PageError};
use super::pages::{self, LoginPage, SIGN_IN_UNAVAILABLE};
use super::session::{self, CSRF_FIELD};
use super::throttle::LoginResult;
use super::{OAuthRequest, OAuthServer, SESSION_TTL};
use crate::body::Body;
use crate::directory::User;
use http::header::SET_COOKIE;
use http::{Response, StatusCode};

const NEUTRAL_FAILURE: &str = "The username or password is not right.";

impl OAuthServer {
    pub(super) async fn login_page(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        let ar = self.authorization_request(req)?;
        match self.session(req).await? {
            Some(_) => Ok(pages::redirect(&format!("/oauth/consent?{}", req.query))),
            None => self.render_login(req, &ar, StatusCode::OK, "", None).await,
        }
    }

    pub(super) async fn login_submit(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        let ar = self.authorization_request(req)?;
        let form = req.form_params().map_err(|_| PageError::BadForm)?;
        // The field must be this browser's, derived from a cookie this server issued.
        let (key, browser) = self.browser(req).await?;
        let Some(browser) = browser.filter(|id| key.field_matches(id, form.get(CSRF_FIELD))) else {
            return Err(PageError::FormExpired.into());
        };
        let username = form.get("username").unwrap_or("");
        let password = form.get("password").unwrap_or("");
        let (status, message) = match self.check_password(username, password, &req.peer).await {
            LoginResult::Success(user) => return self.start_session(req, &user, &browser).await,
            LoginResult::Failure | LoginResult::Throttled => (StatusCode::OK, NEUTRAL_FAILURE),
            LoginResult::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, SIGN_IN_UNAVAILABLE),
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
    ) -> Result<Response<Body>, EndpointError> {
        let now = self.now();
        let id = session::create(&*self.store, user, browser, now, SESSION_TTL.as_secs())
            .await
            .map_err(PageError::Unavailable)?;
        let mut response = pages::see_other(&format!("/oauth/consent?{}", req.query));
        response.headers_mut().append(
            SET_COOKIE,
            session::set_cookie(self.cookie_names(req).session, &id, self.secure(req)),
        );
        Ok(response)
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
    ) -> Result<Response<Body>, EndpointError> {
        let (key, existing) = self.browser(req).await?;
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
        Ok(response)
    }
}
