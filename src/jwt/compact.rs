//! The RFC 7515 §7.1 compact serialization: `BASE64URL(header) . BASE64URL(payload) .
//! BASE64URL(signature)`. Pure: no keys are looked up here.
//!
//! Parsing is strict: exactly three non-empty parts of unpadded base64url, a JSON object
//! header with a string `alg`, and no `crit` (RFC 7515 §4.1.11: a header naming extensions
//! we do not understand must be refused). Header members that point at keys (`jku`, `x5u`,
//! `jwk`) are ignored: keys come only from configuration or the configured JWKS.

use super::keys::SigningKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Longest token looked at; real access tokens are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The JOSE header members that matter here.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    pub typ: Option<String>,
    pub kid: Option<String>,
    /// Present at all: refused.
    pub crit: Option<serde::de::IgnoredAny>,
}

/// A parsed, not yet verified, compact JWS.
pub struct Jws<'a> {
    pub header: Header,
    /// `header.payload` as sent: what the signature covers.
    pub signing_input: &'a str,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why a string is not a compact JWS we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not three base64url parts")]
    Shape,
    #[error("the header is not a JOSE header")]
    Header,
    #[error("the header has crit")]
    Crit,
}

#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// True when `token` has the shape of a compact JWS (two dots), so it is worth parsing as
/// one. tollgate's opaque tokens are base64url and never contain a dot.
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Splits and decodes a compact JWS.
pub fn parse(token: &str) -> Result<Jws<'_>, Malformed> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Malformed::Shape);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Malformed::Shape)?;
    let (header, payload) = signing_input.split_once('.').ok_or(Malformed::Shape)?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() || payload.contains('.') {
        return Err(Malformed::Shape);
    }
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Malformed::Shape);
    let header: Header = serde_json::from_slice(&decode(header)?).map_err(|_| Malformed::Header)?;
    if header.crit.is_some() {
        return Err(Malformed::Crit);
    }
    Ok(Jws {
        header,
        signing_input,
        payload: decode(payload)?,
        signature: decode(signature)?,
    })
}

/// Signs `claims` with `key` as a compact JWS with `typ` (e.g. `at+jwt`) and the key's
/// `kid` in the header.
pub fn sign(
    key: &SigningKey,
    typ: &'static str,
    claims: &impl Serialize,
) -> Result<String, SignError> {
    let header = OutHeader {
        alg: key.alg().name(),
        typ,
        kid: key.kid(),
    };
    let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(SignError::Json)?);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(
        serde_json::to_vec(claims).map_err(SignError::Json)?,
        &mut token,
    );
    let signature = key
        .sign(token.as_bytes())
        .map_err(|_| SignError::Signature)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Why a token could not be signed (never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot encode the token as JSON")]
    Json(#[source] serde_json::Error),
    #[error("the signing operation failed")]
    Signature,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::keys::Alg;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_signed_token_parses_back_and_its_signature_checks() {
        let pem = SigningKey::generate_pem(Alg::EdDsa).expect("generates");
        let key = SigningKey::from_pem(&pem).expect("parses");
        let token = sign(&key, "at+jwt", &serde_json::json!({"sub": "alice"})).expect("signs");
        assert!(looks_like_jws(&token));
        let jws = parse(&token).expect("parses");
        assert_eq!(jws.header.alg, "EdDSA");
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.header.kid.as_deref(), Some(key.kid()));
        assert_eq!(jws.payload, br#"{"sub":"alice"}"#);
        assert!(key
            .public()
            .verify(Alg::EdDsa, jws.signing_input.as_bytes(), &jws.signature));
    }

    #[test]
    fn malformed_tokens_are_refused_by_rule() {
        let header = b64(r#"{"alg":"ES256","typ":"at+jwt"}"#);
        let body = b64("{}");
        let cases: &[(String, Malformed)] = &[
            ("opaque-token".to_string(), Malformed::Shape),
            (format!("{header}.{body}"), Malformed::Shape),
            (format!("{header}.{body}.x.y"), Malformed::Shape),
            (format!("{header}..sig"), Malformed::Shape),
            (format!("{header}.{body}."), Malformed::Shape),
            (format!("{header}.{body}.a+b"), Malformed::Shape),
            (format!("{header}=.{body}.abcd"), Malformed::Shape),
            (format!("{}.{body}.abcd", b64("[1]")), Malformed::Header),
            (
                format!("{}.{body}.abcd", b64(r#"{"typ":"JWT"}"#)),
                Malformed::Header,
            ),
            (
                format!("{}.{body}.abcd", b64(r#"{"alg":"ES256","crit":["exp"]}"#)),
                Malformed::Crit,
            ),
            ("a".repeat(MAX_TOKEN_LEN + 1), Malformed::Shape),
        ];
        for (token, want) in cases {
            assert_eq!(parse(token).err(), Some(*want), "{token}");
        }
    }
}
