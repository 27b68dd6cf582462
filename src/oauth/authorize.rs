//! `GET /oauth/authorize` (RFC 6749 §4.1.1, §4.2.1): where the browser's code and implicit
//! flows start. A valid request goes on to the login page, or to the consent page when the
//! browser already has a session.
//!
//! The authorization request travels as the query string of every step (login, consent,
//! logout) and is validated again at each one (`OAuthServer::authorization_request`, by
//! the pure rules in `request`), so no half-validated state is ever stored.

mod request;

pub use super::protocol::RedirectTarget;
pub use request::{validate, AuthorizeError, AuthorizeRequest, ResponseType};

use super::error::{EndpointError, PageError};
use super::pages;
use super::protocol::Params;
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use http::Response;

impl OAuthServer {
    pub(super) async fn authorize(
        &self,
        req: &OAuthRequest,
    ) -> Result<Response<Body>, EndpointError> {
        self.authorization_request(req)?;
        let next = match self.session(req).await? {
            Some(_) => "consent",
            None => "login",
        };
        Ok(pages::redirect(&format!("/oauth/{next}?{}", req.query)))
    }

    /// The authorization request in the query of `req`, validated: refused with a page until
    /// the client's redirect URI is proven, by redirect afterwards.
    pub(super) fn authorization_request(
        &self,
        req: &OAuthRequest,
    ) -> Result<AuthorizeRequest, EndpointError> {
        let params = Params::parse(&req.query)
            .map_err(|_| PageError::InvalidRequest("The request is malformed."))?;
        let request = validate(
            &params,
            |id| self.client(id),
            self.settings.allow_implicit,
            &self.resources,
        )?;
        Ok(request)
    }
}

impl From<AuthorizeError> for EndpointError {
    fn from(e: AuthorizeError) -> Self {
        match e {
            AuthorizeError::Page(message) => PageError::InvalidRequest(message).into(),
            AuthorizeError::Redirect { to, error } => EndpointError::Redirect { to, error },
        }
    }
}
