//! DPoP proofs (RFC 9449): the check of a `DPoP` header's proof JWT, used by the token
//! endpoint (to bind a token to the proof's key) and by the guard (to accept a bound token
//! only from the key's holder). Pure apart from [`replay`], which remembers spent `jti`s.
//!
//! The checks of §4.3, in order, each refusing with its own [`ProofError`]: one compact JWS
//! of at most [`MAX_PROOF_LEN`] bytes; `typ` `dpop+jwt`; `alg` on the allow-list
//! ([`SIGNING_ALGS`], never `none` or HMAC) and the `jwk`'s own; a public `jwk` (no private
//! members); the signature by that key; then the claims: `htm` the request's method, `htu`
//! its URL ([`htu`]), `iat` within [`MAX_AGE_SECS`] in the past and [`LEEWAY_SECS`] in the
//! future, `jti` present, and with an access token `ath` its SHA-256. Whether the `jti` was
//! used before is the caller's last step ([`ProofIds::spend`]), once everything else held.
//!
//! Server nonces (§8) are not used: the `iat` window and the `jti` set bound replays.

pub mod htu;
pub mod replay;

use crate::jwt::compact;
use crate::jwt::keys::{Alg, PublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use replay::{ProofIds, Spent};

/// `dpop_signing_alg_values_supported` (RFC 9449 §5.1): the algorithms a proof may use.
pub const SIGNING_ALGS: [&str; 3] = ["ES256", "EdDSA", "RS256"];

/// How old a proof may be (seconds after its `iat`).
pub const MAX_AGE_SECS: u64 = 60;

/// How far a proof's `iat` may be ahead of this clock (the client's clock may run ahead).
pub const LEEWAY_SECS: u64 = 30;

/// Longest proof looked at; an ES256 proof is ~500 bytes, an RS256 one with a 4096-bit key
/// under 2 KiB.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// The `typ` of a DPoP proof (§4.2).
pub const TYP: &str = "dpop+jwt";

/// Members a JWK holds only for a private key (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// What the request a proof came with looks like.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method, e.g. `POST`.
    pub method: &'a str,
    /// The request's URL, normalised by [`htu::normalise`] / [`htu::of_request`].
    pub htu: &'a str,
    /// The access token the proof must name in `ath` (at a protected resource); `None` at
    /// the token endpoint.
    pub access_token: Option<&'a str>,
    /// Unix seconds.
    pub now: u64,
}

/// A proof that passed every check but the `jti` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what a bound token's `cnf.jkt` holds.
    pub jkt: String,
    pub jti: String,
    pub iat: u64,
}

/// Why a proof is refused: `invalid_dpop_proof` (400 at the token endpoint, 401 at the
/// guard). The variants exist for the debug log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not one compact JWS of a usable size")]
    Malformed,
    #[error("typ is not dpop+jwt")]
    Typ,
    #[error("alg is not on the allow-list or not the key's")]
    Alg,
    #[error("jwk is missing, private or not a usable public key")]
    Key,
    #[error("the signature does not verify")]
    Signature,
    #[error("the claims are not a JSON object of the expected types")]
    Claims,
    #[error("htm is not the request's method")]
    Method,
    #[error("htu is not the request's URL")]
    Url,
    #[error("iat is too old")]
    Stale,
    #[error("iat is in the future")]
    Future,
    #[error("jti is missing")]
    Jti,
    #[error("ath is not the hash of the access token")]
    Ath,
    #[error("the proof was used before")]
    Replayed,
    #[error("the proof's key is not the one the token is bound to")]
    WrongKey,
    #[error("several DPoP headers")]
    Several,
}

#[derive(Deserialize)]
struct ProofHeader {
    jwk: Option<Value>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<f64>,
    ath: Option<String>,
}

/// Checks `proof` against the request it came with (see the module comment).
pub fn check(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::Malformed);
    }
    let jws = compact::parse(proof).map_err(|_| ProofError::Malformed)?;
    if !jws.header.typ.as_deref().is_some_and(is_dpop_typ) {
        return Err(ProofError::Typ);
    }
    let alg = Alg::parse(&jws.header.alg).ok_or(ProofError::Alg)?;
    let key = header_key(jws.signing_input)?;
    if key.alg != alg {
        return Err(ProofError::Alg);
    }
    if !key.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
        return Err(ProofError::Signature);
    }
    let claims: ProofClaims =
        serde_json::from_slice(&jws.payload).map_err(|_| ProofError::Claims)?;
    if claims.htm.as_deref() != Some(expected.method) {
        return Err(ProofError::Method);
    }
    let htu = claims.htu.as_deref().and_then(htu::normalise);
    if htu.as_deref() != Some(expected.htu) {
        return Err(ProofError::Url);
    }
    let iat = claims.iat.ok_or(ProofError::Claims)?;
    if iat < expected.now.saturating_sub(MAX_AGE_SECS) as f64 {
        return Err(ProofError::Stale);
    }
    if iat > (expected.now + LEEWAY_SECS) as f64 {
        return Err(ProofError::Future);
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(ProofError::Jti)?;
    if let Some(token) = expected.access_token {
        if claims.ath.as_deref() != Some(ath(token).as_str()) {
            return Err(ProofError::Ath);
        }
    }
    Ok(Proof {
        jkt: key.thumbprint(),
        jti,
        iat: iat as u64,
    })
}

/// `ath` (§4.2): base64url SHA-256 of the access token's ASCII.
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

// === impl Proof ===

impl Proof {
    /// The key its `jti` is remembered under ([`replay::replay_key`]).
    pub fn replay_key(&self) -> [u8; 32] {
        replay::replay_key(&self.jkt, &self.jti)
    }

    /// When its `jti` may be forgotten: the proof is stale from then on.
    pub fn forget_at(&self) -> u64 {
        self.iat + MAX_AGE_SECS + 1
    }
}

/// The public key in the proof's `jwk` header member (§4.2: required, never private).
fn header_key(signing_input: &str) -> Result<PublicKey, ProofError> {
    let header = signing_input.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| ProofError::Malformed)?;
    let header: ProofHeader = serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed)?;
    let jwk = header.jwk.ok_or(ProofError::Key)?;
    let object = jwk.as_object().ok_or(ProofError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| object.contains_key(*m)) {
        return Err(ProofError::Key);
    }
    PublicKey::from_jwk(&jwk).ok_or(ProofError::Key)
}

/// §4.2: `typ` is `dpop+jwt` (media types compare case-insensitively; RFC 7515 §4.1.9 lets
/// the `application/` prefix be left out, so it may also be there).
fn is_dpop_typ(typ: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(TYP)
}

#[cfg(test)]
mod tests;
