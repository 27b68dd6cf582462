//! RFC 9068 access-token claims: the ones tollgate signs, and the checks a guard makes of a
//! received JWT (RFC 9068 §4, RFC 7519 §7.2, RFC 8725).
//!
//! Order of the checks: the token's shape and header (`typ` is `at+jwt`, `alg` is on the
//! allow-list) before any key is looked up; the signature with the key the caller found;
//! then the claims. Nothing in the payload is believed before its signature checks.
//!
//! Clock skew: `exp` gets no leeway (a token is never accepted at or after its `exp`, which
//! keeps the verify cache's rule "never past exp" true); `nbf` and `iat` get
//! [`ClaimRules::leeway`], since an issuer's clock a little ahead of ours is no attack.

use super::compact::{self, Jws, Malformed};
use super::keys::{Alg, PublicKey};
use serde::{Deserialize, Serialize};

/// The claims of an access token tollgate issues (RFC 9068 §2.2).
#[derive(Debug, Serialize)]
pub struct AccessClaims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    /// One audience as a string, several as an array (RFC 7519 §4.1.3).
    pub aud: serde_json::Value,
    pub client_id: &'a str,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<&'a str>,
    /// RFC 9449 §6.1 / RFC 7800: the DPoP key the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation<'a>>,
}

/// RFC 7800 `cnf` of a DPoP-bound token: `{"jkt": THUMBPRINT}`.
#[derive(Debug, Serialize)]
pub struct Confirmation<'a> {
    pub jkt: &'a str,
}

/// What a received token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// The required `iss`, compared exactly.
    pub issuer: String,
    /// Seconds an `nbf` or `iat` may lie in the future.
    pub leeway: u64,
}

/// The claims of a token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub sub: String,
    pub client_id: String,
    pub username: Option<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub exp: u64,
    pub iat: Option<u64>,
    /// `cnf.jkt`: the DPoP key the token is bound to (RFC 9449 §6.1).
    pub jkt: Option<String>,
}

/// Why a JWT is not an active token. Every variant means "inactive" (401); the variants
/// exist for the debug log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed: {0}")]
    Malformed(Malformed),
    #[error("typ is not at+jwt")]
    Typ,
    #[error("alg is not on the allow-list")]
    Alg,
    #[error("no accepted key has this kid")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the claims are not a JSON object of the expected types")]
    Claims,
    #[error("claim {0} is missing")]
    Missing(&'static str),
    #[error("iss is not the expected issuer")]
    Issuer,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("cnf binds the token to something other than a DPoP key")]
    Binding,
}

#[derive(Deserialize)]
struct Received {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    client_id: Option<String>,
    azp: Option<String>,
    scope: Option<String>,
    scp: Option<OneOrMany>,
    username: Option<String>,
    cnf: Option<ReceivedCnf>,
}

/// A received `cnf` (RFC 7800): tollgate checks DPoP (`jkt`) proofs only, so a token bound
/// in any other way (mTLS `x5t#S256`, …) is refused rather than taken as a bearer token.
#[derive(Deserialize)]
struct ReceivedCnf {
    jkt: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// RFC 7519 allows `aud` as a string or an array; `scp` is seen both ways too.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Parses `token` and checks what can be checked before a key is chosen: its shape, `typ`
/// and `alg`.
pub fn open(token: &str) -> Result<(Jws<'_>, Alg), Refusal> {
    let jws = compact::parse(token).map_err(Refusal::Malformed)?;
    if !jws.header.typ.as_deref().is_some_and(is_at_jwt) {
        return Err(Refusal::Typ);
    }
    let alg = Alg::parse(&jws.header.alg).ok_or(Refusal::Alg)?;
    Ok((jws, alg))
}

/// Checks the signature of `jws` with `key`, by `alg` (which must be the key's).
pub fn check_signature(jws: &Jws<'_>, alg: Alg, key: &PublicKey) -> Result<(), Refusal> {
    if key.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
        Ok(())
    } else {
        Err(Refusal::Signature)
    }
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, with the
/// `application/` prefix optional. RFC 9068 §4 requires `at+jwt`.
fn is_at_jwt(typ: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(super::TYP_AT_JWT)
}

// === impl ClaimRules ===

impl ClaimRules {
    /// Checks the (signature-checked) payload at `now` (seconds since the epoch).
    pub fn check(&self, payload: &[u8], now: u64) -> Result<Checked, Refusal> {
        let c: Received = serde_json::from_slice(payload).map_err(|_| Refusal::Claims)?;
        if c.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(Refusal::Issuer);
        }
        let exp = c.exp.ok_or(Refusal::Missing("exp"))?;
        // `now` is whole seconds (the real time is anywhere in [now, now + 1)), so a
        // fractional `exp` counts from its whole second: `exp = now + 0.5` may be past.
        if exp.floor() <= now as f64 {
            return Err(Refusal::Expired);
        }
        let latest = (now + self.leeway) as f64;
        if c.nbf.is_some_and(|nbf| nbf > latest) || c.iat.is_some_and(|iat| iat > latest) {
            return Err(Refusal::NotYetValid);
        }
        let sub = c.sub.ok_or(Refusal::Missing("sub"))?;
        let client_id = c.client_id.or(c.azp).ok_or(Refusal::Missing("client_id"))?;
        let scopes = match (c.scope, c.scp) {
            (Some(scope), _) | (None, Some(OneOrMany::One(scope))) => {
                scope.split_whitespace().map(str::to_string).collect()
            }
            (None, Some(OneOrMany::Many(list))) => list,
            (None, None) => Vec::new(),
        };
        let audiences = match c.aud {
            Some(OneOrMany::One(aud)) => vec![aud],
            Some(OneOrMany::Many(list)) => list,
            None => Vec::new(),
        };
        let jkt = match c.cnf {
            None => None,
            Some(cnf)
                if cnf.other.is_empty() && cnf.jkt.as_deref().is_some_and(|j| !j.is_empty()) =>
            {
                cnf.jkt
            }
            Some(_) => return Err(Refusal::Binding),
        };
        Ok(Checked {
            jkt,
            sub,
            client_id,
            username: c.username,
            scopes,
            audiences,
            // Whole seconds, rounded down: never later than the token's own exp.
            exp: exp as u64,
            iat: c.iat.map(|iat| iat.max(0.0) as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn rules() -> ClaimRules {
        ClaimRules {
            issuer: "https://as.example".to_string(),
            leeway: 30,
        }
    }

    fn claims(changes: serde_json::Value) -> Vec<u8> {
        let mut c = json!({
            "iss": "https://as.example", "sub": "alice", "aud": "https://as.example",
            "client_id": "mail-app", "scope": "email email.send",
            "iat": NOW - 10, "exp": NOW + 3600, "jti": "j1",
        });
        for (k, v) in changes.as_object().expect("an object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        serde_json::to_vec(&c).expect("JSON")
    }

    #[test]
    fn good_claims_give_identity_scopes_and_audiences() {
        let got = rules().check(&claims(json!({})), NOW).expect("valid");
        assert_eq!(got.sub, "alice");
        assert_eq!(got.client_id, "mail-app");
        assert_eq!(got.scopes, ["email", "email.send"]);
        assert_eq!(got.audiences, ["https://as.example"]);
        assert_eq!(got.exp, NOW + 3600);
    }

    #[test]
    fn claims_are_refused_by_rule() {
        let cases = [
            (json!({"iss": "https://evil.example"}), Refusal::Issuer),
            (json!({"iss": null}), Refusal::Issuer),
            (json!({"exp": null}), Refusal::Missing("exp")),
            (json!({"exp": NOW}), Refusal::Expired),
            (json!({"exp": NOW - 1}), Refusal::Expired),
            // Found by the fuzzer: within the current second the token may already be past.
            (json!({"exp": NOW as f64 + 0.5}), Refusal::Expired),
            (json!({"nbf": NOW + 31}), Refusal::NotYetValid),
            (json!({"iat": NOW + 31}), Refusal::NotYetValid),
            (json!({"sub": null}), Refusal::Missing("sub")),
            (json!({"client_id": null}), Refusal::Missing("client_id")),
            (json!({"exp": "tomorrow"}), Refusal::Claims),
        ];
        for (change, want) in cases {
            let got = rules().check(&claims(change.clone()), NOW);
            assert_eq!(got.err(), Some(want), "{change}");
        }
        assert!(rules().check(b"[]", NOW).is_err());
        for cnf in [
            json!({"x5t#S256": "abc"}),
            json!({}),
            json!({"jkt": "a", "kid": "b"}),
        ] {
            let got = rules().check(&claims(json!({ "cnf": cnf })), NOW);
            assert_eq!(got.err(), Some(Refusal::Binding), "{cnf}");
        }
    }

    #[test]
    fn a_dpop_binding_is_read_from_cnf() {
        let got = rules()
            .check(&claims(json!({"cnf": {"jkt": "thumb"}})), NOW)
            .expect("valid");
        assert_eq!(got.jkt.as_deref(), Some("thumb"));
        assert_eq!(
            rules().check(&claims(json!({})), NOW).expect("valid").jkt,
            None
        );
    }

    #[test]
    fn leeway_applies_to_nbf_and_iat_only() {
        let within = claims(json!({"nbf": NOW + 30, "iat": NOW + 30}));
        assert!(rules().check(&within, NOW).is_ok());
    }

    #[test]
    fn third_party_shapes_are_read() {
        let got = rules()
            .check(
                &claims(json!({"client_id": null, "azp": "spa", "scope": null,
                               "scp": ["a", "b"], "aud": ["x", "y"], "exp": (NOW + 60) as f64 + 0.5})),
                NOW,
            )
            .expect("valid");
        assert_eq!(got.client_id, "spa");
        assert_eq!(got.scopes, ["a", "b"]);
        assert_eq!(got.audiences, ["x", "y"]);
        assert_eq!(got.exp, NOW + 60);
        let got = rules()
            .check(&claims(json!({"scope": null, "scp": "a b"})), NOW)
            .expect("valid");
        assert_eq!(got.scopes, ["a", "b"]);
    }

    #[test]
    fn typ_must_be_at_jwt_in_any_case_with_or_without_application() {
        for good in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(is_at_jwt(good), "{good}");
        }
        for bad in [
            "JWT",
            "jwt",
            "",
            "application/jwt",
            "at+jwt ",
            "application/",
            "ééééééé+jwt",
        ] {
            assert!(!is_at_jwt(bad), "{bad}");
        }
    }
}
