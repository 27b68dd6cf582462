//! Browser sessions for the login and consent pages, and their CSRF tokens.
//!
//! - Before login, the login form is protected by a double-submit token: a random value in
//!   a `tollgate_csrf` cookie that the form must repeat. A token from another browser, or
//!   none, is refused.
//! - A successful login creates a fresh session (new id, so a planted id is useless: no
//!   fixation) stored under the hash of its id, with its own CSRF token for the consent form.
//!
//! Cookies are `HttpOnly; SameSite=Lax; Path=/oauth`, and `Secure` when served over TLS.

use crate::directory::User;
use crate::secrets::random_token;
use crate::store::{Record, RecordKind, RecordState, StoreError, TokenStore};
use crate::verify::cache::token_hash;
use http::header::{HeaderMap, HeaderValue, COOKIE};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "tollgate_session";
pub const CSRF_COOKIE: &str = "tollgate_csrf";
/// Name of the hidden form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

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

/// A `Set-Cookie` value for a browser-session cookie.
pub fn set_cookie(name: &str, value: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/oauth; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tollgate_invalid=; Path=/oauth; Max-Age=0"))
}

/// A `Set-Cookie` value that deletes a cookie.
pub fn clear_cookie(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}=; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age=0"
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

/// The session the request's cookie names, if it exists and is live.
pub async fn load(
    store: &dyn TokenStore,
    headers: &HeaderMap,
    now: u64,
) -> Result<Option<Session>, StoreError> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_hash = token_hash(id);
    let record = store.get(id_hash).await?;
    Ok(record
        .filter(|r| r.kind == RecordKind::Session && r.is_live(now))
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

/// Starts a session for `user`; returns the cookie value (the raw id, never stored).
pub async fn create(
    store: &dyn TokenStore,
    user: &User,
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
        redirect_uri: None,
        code_challenge: None,
        name: user.name.clone(),
        email: user.email.clone(),
        csrf: Some(random_token()),
    };
    store.insert(token_hash(&id), record).await?;
    Ok(id)
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
    fn cookies_are_http_only_lax_and_secure_under_tls() {
        let c = set_cookie(SESSION_COOKIE, "v", true);
        assert_eq!(
            c,
            "tollgate_session=v; Path=/oauth; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!set_cookie(SESSION_COOKIE, "v", false)
            .to_str()
            .expect("ascii")
            .contains("Secure"));
    }
}
