//! The bearer guard's pure parts: RFC 6750 §2.1 extraction, the scope check, and the
//! `WWW-Authenticate` challenges of §3.
//!
//! Only the `Authorization` header is read: tokens in the query string (§2.3) or a form
//! body (§2.2) are deliberately not accepted, since they leak into logs and caches.

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No header, or another scheme (e.g. Basic).
    Missing,
    /// A Bearer header that is not one well-formed `b64token`, or several headers.
    Malformed,
    Bearer(&'a str),
}

/// `WWW-Authenticate` for a request without a (well-formed) token.
pub static CHALLENGE_MISSING: HeaderValue = HeaderValue::from_static(r#"Bearer realm="tollgate""#);
/// `WWW-Authenticate` for a token that is not active.
pub static CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#);

/// Reads the bearer token from the request headers.
pub fn extract(headers: &HeaderMap) -> Credential<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credential::Missing;
    };
    if values.next().is_some() {
        return Credential::Malformed;
    }
    let Ok(text) = value.to_str() else {
        return Credential::Malformed;
    };
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Missing;
    }
    let token = rest.trim_start_matches(' ');
    if is_b64token(token) {
        Credential::Bearer(token)
    } else {
        Credential::Malformed
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The `WWW-Authenticate` values of one protected route (RFC 6750 §3), each naming the
/// route's RFC 9728 metadata document as `resource_metadata` (RFC 9728 §5.1), so a client
/// that meets the 401 can find out which authorization server and scopes the route wants.
#[derive(Debug, Clone)]
pub struct Challenges {
    /// No (well-formed) token.
    pub missing: HeaderValue,
    /// A token that is not active, or not meant for this route.
    pub invalid: HeaderValue,
    /// A token that lacks some of the route's scopes (§3.1).
    pub scope: HeaderValue,
}

impl Challenges {
    /// The challenges of a route requiring `required`, whose metadata is at `metadata_url`.
    pub fn new(required: &[String], metadata_url: &str) -> Self {
        // The URL is the configured issuer (an http(s) URL) and a route prefix (a plain
        // path): no '"' or '\\' to escape. One that cannot be a header value is left out.
        let metadata = if metadata_url.contains(['"', '\\']) {
            String::new()
        } else {
            format!(r#", resource_metadata="{metadata_url}""#)
        };
        let value = |text: String, fallback: &HeaderValue| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| fallback.clone())
        };
        Self {
            missing: value(
                format!(r#"Bearer realm="tollgate"{metadata}"#),
                &CHALLENGE_MISSING,
            ),
            invalid: value(
                format!(r#"Bearer realm="tollgate", error="invalid_token"{metadata}"#),
                &CHALLENGE_INVALID,
            ),
            // Scope names were validated as RFC 6749 scope-tokens (printable ASCII without
            // '"' or '\\').
            scope: value(
                format!(
                    r#"Bearer realm="tollgate", error="insufficient_scope", scope="{}"{metadata}"#,
                    required.join(" ")
                ),
                &CHALLENGE_INVALID,
            ),
        }
    }
}

/// True when every required scope is among the granted ones.
pub fn has_all_scopes(granted: &[String], required: &[String]) -> bool {
    required.iter().all(|r| granted.iter().any(|g| g == r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("test value"));
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc"] {
            assert_eq!(extract(&auth(&[v])), Credential::Bearer("abc"), "{v}");
        }
    }

    #[test]
    fn token68_characters_and_padding_are_accepted() {
        assert_eq!(
            extract(&auth(&["Bearer a-b.c_d~e+f/g=="])),
            Credential::Bearer("a-b.c_d~e+f/g==")
        );
    }

    #[test]
    fn missing_or_other_scheme_is_missing() {
        assert_eq!(extract(&HeaderMap::new()), Credential::Missing);
        assert_eq!(extract(&auth(&["Basic YTpi"])), Credential::Missing);
        assert_eq!(extract(&auth(&["Bearerabc"])), Credential::Missing);
    }

    #[test]
    fn malformed_bearer_values_are_malformed() {
        for v in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer ====",
            "Bearer a=b",
            "Bearer \"x\"",
        ] {
            assert_eq!(extract(&auth(&[v])), Credential::Malformed, "{v}");
        }
        assert_eq!(
            extract(&auth(&["Bearer a", "Bearer b"])),
            Credential::Malformed
        );
    }

    #[test]
    fn scope_check_needs_every_required_scope() {
        let granted = vec!["email".to_string(), "profile".to_string()];
        assert!(has_all_scopes(&granted, &["email".to_string()]));
        assert!(has_all_scopes(&granted, &[]));
        assert!(!has_all_scopes(
            &granted,
            &["email".to_string(), "email.send".to_string()]
        ));
    }

    #[test]
    fn challenges_name_the_scopes_and_the_metadata_document() {
        let url = "https://gw.example/.well-known/oauth-protected-resource/api/mail";
        let c = Challenges::new(&["email".to_string(), "email.send".to_string()], url);
        let metadata = format!(r#"resource_metadata="{url}""#);
        assert_eq!(
            c.missing,
            format!(r#"Bearer realm="tollgate", {metadata}"#).as_str()
        );
        assert_eq!(
            c.invalid,
            format!(r#"Bearer realm="tollgate", error="invalid_token", {metadata}"#).as_str()
        );
        assert_eq!(
            c.scope,
            format!(
                r#"Bearer realm="tollgate", error="insufficient_scope", scope="email email.send", {metadata}"#
            )
            .as_str()
        );
        let odd = Challenges::new(&[], "https://gw.example/\"x");
        assert_eq!(odd.missing, CHALLENGE_MISSING);
    }
}
