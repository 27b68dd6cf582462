//! Browser sessions for the login and consent pages, and their CSRF tokens.
//!
//! - Before login, the browser gets a signed browser id in a cookie and the login form
//!   carries an HMAC of it (see [`super::csrf`]): a made-up cookie, a field from another
//!   browser, or none, is refused.
//! - A successful login creates a fresh session (new id, so a planted id is useless: no
//!   fixation) stored under the hash of its id, with its own CSRF token for the consent
//!   form, and bound to the browser id: it is honoured only with that browser's cookie.
//!
//! Cookies are `HttpOnly; SameSite=Lax`. Over plain HTTP they are `tollgate_csrf` and
//! `tollgate_session` with `Path=/oauth`. Over HTTPS they are `Secure` and prefixed: the
//! browser id is `__Host-tollgate_csrf` (`Path=/`, no `Domain`: no other host can plant
//! it), the session `__Secure-tollgate_session`, which keeps `Path=/oauth` so session ids
//! never travel to the APIs behind the gateway (a `__Host-` name would need `Path=/`).
//!
//! Shared by the browser's endpoints (authorize, login, consent, logout); it serves none.

use super::csrf::{browser_binding, CsrfKey, KEY_NAME};
use super::error::{EndpointError, PageError};
use super::{OAuthRequest, OAuthServer};
use crate::directory::User;
use crate::secrets::random_token;
use crate::store::token_hash;
use crate::store::{Record, RecordKind, RecordState, StoreError, TokenStore};
use http::header::{HeaderMap, HeaderValue, COOKIE};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "tollgate_session";
pub const CSRF_COOKIE: &str = "tollgate_csrf";
pub const SECURE_SESSION_COOKIE: &str = "__Secure-tollgate_session";
pub const SECURE_CSRF_COOKIE: &str = "__Host-tollgate_csrf";
/// Name of the hidden form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The cookie names for a request served over HTTPS (`secure`) or plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    pub session: &'static str,
    /// The browser id that binds the login form and the session.
    pub browser: &'static str,
}

impl CookieNames {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                session: SECURE_SESSION_COOKIE,
                browser: SECURE_CSRF_COOKIE,
            }
        } else {
            Self {
                session: SESSION_COOKIE,
                browser: CSRF_COOKIE,
            }
        }
    }
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: [u8; 32],
    pub user: User,
    pub csrf: String,
}

/// The value of cookie `name` in the request, if sent exactly once.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
    }
    found
}

/// The `Path` a cookie must have: `__Host-` cookies must be `Path=/` (RFC 6265bis §4.1.3.2).
fn path_of(name: &str) -> &'static str {
    if name.starts_with("__Host-") {
        "/"
    } else {
        "/oauth"
    }
}

/// A `Set-Cookie` value for a browser-session cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> HeaderValue {
    cookie_header(name, value, secure, "")
}

/// A `Set-Cookie` value that deletes a cookie (with the attributes it was set with, or a
/// browser ignores the deletion of a prefixed cookie).
pub fn clear_cookie(name: &str, secure: bool) -> HeaderValue {
    cookie_header(name, "", secure, "; Max-Age=0")
}

fn cookie_header(name: &str, value: &str, secure: bool, extra: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let path = path_of(name);
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}{extra}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tollgate_invalid=; Path=/oauth; Max-Age=0"))
}

/// Compares a submitted CSRF token with the expected one in constant time.
pub fn csrf_matches(submitted: Option<&str>, expected: &str) -> bool {
    match submitted {
        Some(s) if !expected.is_empty() => bool::from(s.as_bytes().ct_eq(expected.as_bytes())),
        _ => false,
    }
}

/// The session the request's cookie names, if it exists, is live and belongs to the
/// browser whose (verified) id is `browser`.
pub async fn load(
    store: &dyn TokenStore,
    headers: &HeaderMap,
    names: CookieNames,
    browser: Option<&str>,
    now: u64,
) -> Result<Option<Session>, StoreError> {
    let (Some(id), Some(browser)) = (cookie(headers, names.session), browser) else {
        return Ok(None);
    };
    let id_hash = token_hash(id);
    let record = store.get(id_hash).await?;
    let binding = browser_binding(browser);
    let same_browser = |r: &Record| {
        r.browser
            .as_deref()
            .is_some_and(|b| bool::from(b.as_bytes().ct_eq(binding.as_bytes())))
    };
    Ok(record
        .filter(|r| r.kind == RecordKind::Session && r.is_live(now) && same_browser(r))
        .map(|r| Session {
            id_hash,
            csrf: r.csrf.unwrap_or_default(),
            user: User {
                username: r.sub,
                name: r.name,
                email: r.email,
            },
        }))
}

/// Starts a session for `user` in the browser whose id is `browser`; returns the cookie
/// value (the raw id, never stored).
pub async fn create(
    store: &dyn TokenStore,
    user: &User,
    browser: &str,
    now: u64,
    ttl_secs: u64,
) -> Result<String, StoreError> {
    let id = random_token();
    let record = Record {
        kind: RecordKind::Session,
        state: RecordState::Active,
        grant_id: format!("session:{}", random_token()),
        client_id: String::new(),
        sub: user.username.clone(),
        username: Some(user.username.clone()),
        scopes: Vec::new(),
        issued_at: now,
        expires_at: now + ttl_secs,
        grant_expires_at: now + ttl_secs,
        redirect_uri: None,
        code_challenge: None,
        name: user.name.clone(),
        email: user.email.clone(),
        csrf: Some(random_token()),
        browser: Some(browser_binding(browser)),
        audiences: Vec::new(),
        jkt: None,
    };
    store.insert(token_hash(&id), record).await?;
    Ok(id)
}

// === impl OAuthServer ===

impl OAuthServer {
    /// The login session of this browser, if it has one.
    pub(super) async fn session(
        &self,
        req: &OAuthRequest,
    ) -> Result<Option<Session>, EndpointError> {
        let (_, browser) = self.browser(req).await?;
        let names = self.cookie_names(req);
        let session = load(
            &*self.store,
            &req.headers,
            names,
            browser.as_deref(),
            self.now(),
        )
        .await
        .map_err(PageError::Unavailable)?;
        Ok(session)
    }

    /// The CSRF key, and this browser's id if its cookie is one this server issued.
    pub(super) async fn browser(
        &self,
        req: &OAuthRequest,
    ) -> Result<(&CsrfKey, Option<String>), EndpointError> {
        let key = self.csrf_key().await.map_err(PageError::Unavailable)?;
        let id = cookie(&req.headers, self.cookie_names(req).browser)
            .and_then(|c| key.browser_id(c))
            .map(str::to_string);
        Ok((key, id))
    }

    /// The login-CSRF key shared by every instance on this store (created once if missing).
    async fn csrf_key(&self) -> Result<&CsrfKey, StoreError> {
        self.csrf_key
            .get_or_try_init(|| async {
                let candidate: [u8; 32] = rand::random();
                let key = self.store.server_key(KEY_NAME, candidate).await?;
                Ok(CsrfKey::new(&key))
            })
            .await
    }

    /// Whether cookies get `Secure` (and prefixed names): over TLS, or behind an https issuer.
    pub(super) fn secure(&self, req: &OAuthRequest) -> bool {
        req.secure || self.settings.issuer.starts_with("https://")
    }

    pub(super) fn cookie_names(&self, req: &OAuthRequest) -> CookieNames {
        CookieNames::new(self.secure(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie_header: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(cookie_header).expect("test value"),
        );
        h
    }

    #[test]
    fn cookie_is_found_among_others_and_refused_when_repeated() {
        assert_eq!(
            cookie(&headers("a=1; tollgate_session=xyz; b=2"), SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(
            cookie(
                &headers("tollgate_session=x; tollgate_session=y"),
                SESSION_COOKIE
            ),
            None
        );
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn csrf_must_be_present_and_equal() {
        assert!(csrf_matches(Some("abc"), "abc"));
        assert!(!csrf_matches(Some("abd"), "abc"));
        assert!(!csrf_matches(None, "abc"));
        assert!(!csrf_matches(Some(""), ""));
    }

    #[test]
    fn cookies_are_http_only_lax_and_prefixed_and_secure_under_tls() {
        let tls = CookieNames::new(true);
        assert_eq!(
            set_cookie(tls.session, "v", true),
            "__Secure-tollgate_session=v; Path=/oauth; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            set_cookie(tls.browser, "v", true),
            "__Host-tollgate_csrf=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            clear_cookie(tls.browser, true),
            "__Host-tollgate_csrf=; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=0"
        );
        let plain = CookieNames::new(false);
        assert_eq!(
            set_cookie(plain.browser, "v", false),
            "tollgate_csrf=v; Path=/oauth; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_cookie(plain.session, "v", false),
            "tollgate_session=v; Path=/oauth; HttpOnly; SameSite=Lax"
        );
    }
}
