//! `GET /oauth/logout`: ends the browser's session (the record deleted, the cookie
//! cleared). With a valid authorization request in the query (the consent page's "not you?"
//! link) the browser goes back to the login page for it; otherwise it is told it is signed
//! out.

use super::error::{EndpointError, PageError};
use super::pages;
use super::session;
use super::{OAuthRequest, OAuthServer};
use crate::body::Body;
use crate::store::token_hash;
use http::header::SET_COOKIE;
use http::{Response, StatusCode};

impl OAuthServer {
    pub(super) async fn logout(&self, req: &OAuthRequest) -> Result<Response<Body>, EndpointError> {
        let names = self.cookie_names(req);
        if let Some(id) = session::cookie(&req.headers, names.session) {
            self.store
                .delete(token_hash(id))
                .await
                .map_err(PageError::Unavailable)?;
        }
        let mut response = match self.authorization_request(req) {
            Ok(_) => pages::redirect(&format!("/oauth/login?{}", req.query)),
            Err(_) => pages::error(StatusCode::OK, "Signed out", "You are signed out."),
        };
        response.headers_mut().append(
            SET_COOKIE,
            session::clear_cookie(names.session, self.secure(req)),
        );
        Ok(response)
    }
}
