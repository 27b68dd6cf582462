//! The guard's rules, called by `Gateway::authenticate` on both engines: RFC 6750 §2.1
//! extraction (and RFC 9449 §7.1 for the `DPoP` scheme), the DPoP proof and key-binding
//! checks, the audience and scope checks ([`admit`]), and the `WWW-Authenticate`
//! challenges of RFC 6750 §3 and RFC 9449 §7.1. All pure but [`spend_proof`], which
//! remembers a proof's `jti` (in the process, and in Redis when the store is shared).
//!
//! Only the `Authorization` header is read: tokens in the query string (§2.3) or a form
//! body (§2.2) are deliberately not accepted, since they leak into logs and caches.
//!
//! DPoP (RFC 9449 §7): a token bound to a key (`cnf.jkt`) is accepted only under the
//! `DPoP` scheme with a proof made by that key for this method and URL ([`check_proof`],
//! [`check_binding`]); presented as `Bearer` it is refused, so a stolen bound token is
//! worth nothing without the key. An unbound token under the `DPoP` scheme is refused too:
//! there is no key to check the proof against.

use super::error::GatewayError;
use super::headers::HeaderView;
use crate::config::WhenStoreDown;
use crate::dpop::{self, Expected, Proof, ProofError, Spent};
use crate::verify::cache::VerifyCache;
use crate::verify::{Principal, VerifyError};
use http::header::{HeaderValue, AUTHORIZATION};
use http::Method;
use std::sync::Arc;

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No header, or another scheme (e.g. Basic).
    Missing,
    /// A Bearer or DPoP header that is not one well-formed `b64token`, or several headers.
    Malformed,
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` (RFC 9449 §7.1): the token is presented with a proof.
    Dpop(&'a str),
}

/// What of a request its DPoP proof must match (RFC 9449 §4.3): the method and the URL the
/// client sent it to, as this listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub method: &'a Method,
    /// `http` or `https` (the connection's, `ConnInfo::proto`).
    pub scheme: &'a HeaderValue,
    /// The request's one authority (`gateway::authority`).
    pub authority: Option<&'a HeaderValue>,
    /// The request path as sent (no query).
    pub path: &'a str,
}

/// The name of the proof header (RFC 9449 §4.1).
pub const DPOP: &str = "dpop";

/// `WWW-Authenticate` for a request without a (well-formed) token.
pub static CHALLENGE_MISSING: HeaderValue = HeaderValue::from_static(r#"Bearer realm="tollgate""#);
/// `WWW-Authenticate` for a token that is not active.
pub static CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static(r#"Bearer realm="tollgate", error="invalid_token""#);

/// Reads the bearer token from the request headers.
pub fn extract(headers: &impl HeaderView) -> Credential<'_> {
    let mut values = headers.values(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Credential::Missing;
    };
    if values.next().is_some() {
        return Credential::Malformed;
    }
    // Visible ASCII only, as `HeaderValue::to_str` takes.
    let Some(text) = visible_ascii(value) else {
        return Credential::Malformed;
    };
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !dpop && !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::Missing;
    }
    let token = rest.trim_start_matches(' ');
    match (is_b64token(token), dpop) {
        (true, false) => Credential::Bearer(token),
        (true, true) => Credential::Dpop(token),
        (false, _) => Credential::Malformed,
    }
}

/// A header value as text when it is visible ASCII, tab and space (what
/// `HeaderValue::to_str` accepts), whichever engine read it.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    // A fold, not `all`: without the early exit the check runs many bytes at a time.
    let visible = value.iter().fold(true, |ok, &b| {
        ok & (b == b'\t' || (0x20..0x7f).contains(&b))
    });
    visible.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// Checks the request's one `DPoP` header as a proof for `token` on `target` at `now`
/// (everything but the `jti`, which the caller spends last).
pub fn check_proof(
    headers: &impl HeaderView,
    target: &Target<'_>,
    token: &str,
    now: u64,
) -> Result<Proof, ProofError> {
    let mut values = headers.values(http::HeaderName::from_static(DPOP));
    let value = values.next().ok_or(ProofError::Malformed)?;
    if values.next().is_some() {
        return Err(ProofError::Several);
    }
    let proof = visible_ascii(value).ok_or(ProofError::Malformed)?;
    let scheme = target.scheme.to_str().map_err(|_| ProofError::Url)?;
    let authority = target.authority.ok_or(ProofError::Url)?;
    let authority = authority.to_str().map_err(|_| ProofError::Url)?;
    let htu = dpop::htu::of_request(scheme, authority, target.path).ok_or(ProofError::Url)?;
    let expected = Expected {
        method: target.method.as_str(),
        htu: &htu,
        access_token: Some(token),
        now,
    };
    dpop::check(proof, &expected)
}

/// The checks of a verified token against how it was presented and the route: its DPoP
/// binding ([`check_binding`]), the route's audience and scopes. Made on every
/// request, cached verdict or not: a verdict is cached per token, and one token may be sent
/// to any route, with or without a proof.
pub(super) fn admit(
    route: &super::Route,
    principal: &Principal,
    proof: Option<&Proof>,
    dpop: bool,
) -> Result<(), GatewayError> {
    let challenges = &route.challenges;
    match check_binding(principal.jkt.as_deref(), proof) {
        Binding::Fits => {}
        Binding::WrongScheme => {
            return Err(GatewayError::InvalidToken {
                challenge: challenges.invalid_for(true),
            })
        }
        Binding::WrongKey => {
            return Err(GatewayError::InvalidDpopProof {
                challenge: challenges.dpop.proof.clone(),
                reason: ProofError::WrongKey,
            })
        }
    }
    // A bound token speaks DPoP from here on, whichever scheme it came with.
    let bound = dpop || principal.jkt.is_some();
    if let Some(audience) = &route.config.audience {
        if !principal.has_audience(audience) {
            return Err(GatewayError::WrongAudience {
                challenge: challenges.invalid_for(bound),
            });
        }
    }
    if !has_all_scopes(&principal.scopes, &route.config.scopes) {
        return Err(GatewayError::InsufficientScope {
            challenge: challenges.scope_for(bound),
        });
    }
    Ok(())
}

/// Spends a proof's `jti` (RFC 9449 §11.1) in the verifier's set: a replay is
/// `invalid_dpop_proof`; an id that cannot be remembered (the set full) is our outage, 503.
/// When the shared store cannot be asked, the id is already in this process's set, and the
/// route's `when_store_down` decides, as for a cached verdict: `serve_cached` goes on (a
/// replay to another instance is then possible for the proof's minute, the same degradation
/// as a revocation that cannot travel), `deny` answers 503.
pub(super) async fn spend_proof(
    verifier: &VerifyCache,
    proof: &Proof,
    challenge: &HeaderValue,
    when_down: WhenStoreDown,
) -> Result<(), GatewayError> {
    let now = verifier.now_unix();
    let unavailable = |e| GatewayError::VerifierUnavailable(Arc::new(e));
    match verifier
        .proof_ids()
        .spend(proof.replay_key(), proof.forget_at(), now)
        .await
    {
        Spent::First => Ok(()),
        Spent::Replayed => Err(GatewayError::InvalidDpopProof {
            challenge: challenge.clone(),
            reason: ProofError::Replayed,
        }),
        Spent::Full => Err(unavailable(VerifyError::ProofIdsFull)),
        Spent::Store(e) => match when_down {
            WhenStoreDown::ServeCached => {
                tracing::debug!(error = %e, "proof id kept in this process only: store down");
                Ok(())
            }
            WhenStoreDown::Deny => Err(unavailable(VerifyError::Store(e))),
        },
    }
}

/// How a verified token's binding and the way it was presented fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// An unbound token as Bearer, or a bound one with a proof by its key.
    Fits,
    /// A bound token without a proof (as Bearer), or an unbound one as DPoP: `invalid_token`.
    WrongScheme,
    /// A proof by another key than the token's: `invalid_dpop_proof`.
    WrongKey,
}

/// RFC 9449 §7.1: the token's `cnf.jkt` (`bound`) against the proof it came with.
pub fn check_binding(bound: Option<&str>, proof: Option<&Proof>) -> Binding {
    match (bound, proof) {
        (None, None) => Binding::Fits,
        (Some(jkt), Some(proof)) if proof.jkt == jkt => Binding::Fits,
        (Some(_), Some(_)) => Binding::WrongKey,
        (Some(_), None) | (None, Some(_)) => Binding::WrongScheme,
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
    /// RFC 9449 §7.1: the same three for a token presented (or bound) as DPoP, and one for
    /// a bad proof.
    pub dpop: DpopChallenges,
}

/// `WWW-Authenticate: DPoP …` values of one protected route, each with `algs` (the proof
/// algorithms accepted, RFC 9449 §7.1).
#[derive(Debug, Clone)]
pub struct DpopChallenges {
    pub invalid: HeaderValue,
    pub proof: HeaderValue,
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
            dpop: DpopChallenges::new(required, &metadata),
        }
    }
}

impl Challenges {
    /// The `invalid_token` challenge, in the scheme the token is (or should be) used with.
    pub fn invalid_for(&self, dpop: bool) -> HeaderValue {
        match dpop {
            true => self.dpop.invalid.clone(),
            false => self.invalid.clone(),
        }
    }

    /// The `insufficient_scope` challenge, in the scheme the token is used with.
    pub fn scope_for(&self, dpop: bool) -> HeaderValue {
        match dpop {
            true => self.dpop.scope.clone(),
            false => self.scope.clone(),
        }
    }
}

impl DpopChallenges {
    /// `metadata` is the `, resource_metadata="…"` parameter (or nothing).
    fn new(required: &[String], metadata: &str) -> Self {
        let algs = dpop::SIGNING_ALGS.join(" ");
        let value = |error: &str| {
            let text = format!(r#"DPoP realm="tollgate", {error}, algs="{algs}"{metadata}"#);
            HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static(r#"DPoP realm="tollgate""#))
        };
        Self {
            invalid: value(r#"error="invalid_token""#),
            proof: value(r#"error="invalid_dpop_proof""#),
            scope: value(&format!(
                r#"error="insufficient_scope", scope="{}""#,
                required.join(" ")
            )),
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
    use http::HeaderMap;

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
    fn dpop_scheme_is_read_like_bearer() {
        for v in ["DPoP abc", "dpop abc", "DPOP   abc"] {
            assert_eq!(extract(&auth(&[v])), Credential::Dpop("abc"), "{v}");
        }
        for v in ["DPoP", "DPoP a b", "DPoP \"x\""] {
            assert_eq!(extract(&auth(&[v])), Credential::Malformed, "{v}");
        }
    }

    #[test]
    fn binding_fits_only_the_key_and_scheme_of_the_token() {
        let proof = |jkt: &str| Proof {
            jkt: jkt.to_string(),
            jti: "j".to_string(),
            iat: 0,
        };
        let cases = [
            (None, None, Binding::Fits),
            (Some("k"), Some(proof("k")), Binding::Fits),
            (Some("k"), Some(proof("other")), Binding::WrongKey),
            (Some("k"), None, Binding::WrongScheme),
            (None, Some(proof("k")), Binding::WrongScheme),
        ];
        for (bound, proof, want) in cases {
            assert_eq!(check_binding(bound, proof.as_ref()), want, "{bound:?}");
        }
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
        assert_eq!(
            c.dpop.proof,
            format!(
                r#"DPoP realm="tollgate", error="invalid_dpop_proof", algs="ES256 EdDSA RS256", {metadata}"#
            )
            .as_str()
        );
        let odd = Challenges::new(&[], "https://gw.example/\"x");
        assert_eq!(odd.missing, CHALLENGE_MISSING);
    }
}
