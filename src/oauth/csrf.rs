//! The browser id that binds the login form and the login session to one browser.
//!
//! Before login the browser gets a cookie `<id>.<tag>`: a random id and an HMAC-SHA256 tag
//! of it under a server key, so a cookie value the server did not issue is refused. The
//! login form's hidden field is another HMAC of the same id, so a field taken from another
//! browser's page, or made up to match a planted cookie, is refused. A successful login
//! records the id's SHA-256 with the session, and the session is honoured only together
//! with that cookie, so a session cookie planted from elsewhere is useless too.
//!
//! The key lives in the token store (created once, by whichever instance needs it first),
//! so every instance sharing a store accepts the forms of every other. Over HTTPS the cookie
//! is `__Host-` prefixed (`Secure`, `Path=/`, no `Domain`), so no other host (a sibling
//! subdomain included) can plant one (RFC 6265bis §4.1.3.2).

use crate::secrets::random_token;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The name of the key in the token store.
pub const KEY_NAME: &str = "login-csrf-v1";

/// Domain separation: a cookie tag is never a valid form field and the other way round.
const COOKIE_LABEL: &[u8] = b"tollgate login cookie\0";
const FIELD_LABEL: &[u8] = b"tollgate login form\0";

/// The server key that signs browser ids. No `Debug`: it is a secret.
pub struct CsrfKey(hmac::Key);

impl CsrfKey {
    pub fn new(bytes: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    fn mac(&self, label: &[u8], id: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(label);
        ctx.update(id.as_bytes());
        URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
    }

    /// A new browser id and its cookie value.
    pub fn mint(&self) -> (String, String) {
        let id = random_token();
        let cookie = format!("{id}.{}", self.mac(COOKIE_LABEL, &id));
        (id, cookie)
    }

    /// The browser id in a cookie value this server issued; `None` for anything else.
    pub fn browser_id<'a>(&self, cookie: &'a str) -> Option<&'a str> {
        let (id, tag) = cookie.split_once('.')?;
        let ok = self.mac(COOKIE_LABEL, id).as_bytes().ct_eq(tag.as_bytes());
        (bool::from(ok) && !id.is_empty()).then_some(id)
    }

    /// The login form's hidden field for browser `id`.
    pub fn field(&self, id: &str) -> String {
        self.mac(FIELD_LABEL, id)
    }

    /// True when `submitted` is the field of browser `id` (compared in constant time).
    pub fn field_matches(&self, id: &str, submitted: Option<&str>) -> bool {
        submitted.is_some_and(|s| bool::from(self.field(id).as_bytes().ct_eq(s.as_bytes())))
    }
}

/// What a session stores to recognise its browser: the SHA-256 of the id, never the id.
pub fn browser_binding(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_issued_cookies_and_their_own_fields_are_accepted() {
        let key = CsrfKey::new(&[7; 32]);
        let (id, cookie) = key.mint();
        assert_eq!(key.browser_id(&cookie), Some(id.as_str()));
        assert!(key.field_matches(&id, Some(&key.field(&id))));

        let (other_id, _) = key.mint();
        assert!(!key.field_matches(&id, Some(&key.field(&other_id))));
        assert!(!key.field_matches(&id, None));
        assert!(!key.field_matches(&id, Some("")));

        // Planted values: made up, a tag moved to another id, a tag from another key, a
        // cookie tag offered as the field.
        let tag = cookie.split_once('.').map(|(_, t)| t).unwrap_or_default();
        for planted in [
            "attacker-chosen-value".to_string(),
            format!("{other_id}.{tag}"),
            CsrfKey::new(&[8; 32]).mint().1,
            format!("{id}."),
            format!(".{tag}"),
            id.clone(),
        ] {
            assert_eq!(key.browser_id(&planted), None, "{planted}");
        }
        assert!(!key.field_matches(&id, Some(tag)));
    }

    #[test]
    fn the_binding_is_a_hash_not_the_id() {
        let binding = browser_binding("abc");
        assert_ne!(binding, "abc");
        assert_eq!(binding, browser_binding("abc"));
        assert_ne!(binding, browser_binding("abd"));
    }
}
