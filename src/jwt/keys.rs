//! Signing and verification keys (RFC 7517, RFC 7518 §3, RFC 8037, RFC 7638).
//!
//! Signing keys are PKCS#8 PEM: ECDSA P-256 (`ES256`) or Ed25519 (`EdDSA`), the two that
//! `ring` signs with and that every JOSE library verifies. Verification keys also take RSA
//! (`RS256`), which third-party issuers commonly use. The algorithm a signature is checked
//! with is the key's own, and the token's `alg` header must name it: a key is never used
//! with an algorithm the token chose (so no `none`, and no HMAC keyed with a public key).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;

/// The signature algorithms tollgate accepts (RFC 7518 names). Anything else, `none` and
/// the HMAC family included, is refused before a key is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    EdDsa,
    Rs256,
}

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no PEM private key found (expected -----BEGIN PRIVATE KEY-----, PKCS#8)")]
    NoKey,
    #[error(
        "a {0} key: convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`"
    )]
    NotPkcs8(&'static str),
    #[error("not an ECDSA P-256 (ES256) or Ed25519 (EdDSA) PKCS#8 private key ({0})")]
    Unsupported(String),
}

/// One private key tollgate signs access tokens with.
pub struct SigningKey {
    public: PublicKey,
    pair: Pair,
}

enum Pair {
    Es256(EcdsaKeyPair, SystemRandom),
    EdDsa(Ed25519KeyPair),
}

/// A public key: what a JWKS lists and what a signature is checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The JWK `kid`: for tollgate's own keys the RFC 7638 thumbprint.
    pub kid: Option<String>,
    pub alg: Alg,
    material: Material,
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Uncompressed SEC1 point, `04 || x || y`.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// The current signing key and the public halves of earlier ones, still accepted and
/// still published so tokens signed before a rollover stay valid until they expire.
pub struct SigningKeys {
    pub current: SigningKey,
    /// The current key's public half first, then the previous keys'.
    pub public: Vec<PublicKey>,
}

// === impl Alg ===

impl Alg {
    /// The algorithm a JOSE `alg` names, when it is one tollgate accepts.
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            "RS256" => Some(Alg::Rs256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
        }
    }
}

// === impl SigningKey ===

impl SigningKey {
    /// Reads a PKCS#8 PEM private key from a file.
    pub fn load(path: &std::path::Path) -> Result<SigningKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Parses the first private key in `pem`: PKCS#8 ECDSA P-256 or Ed25519.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let mut reader = pem.as_bytes();
        loop {
            let item = rustls_pemfile::read_one(&mut reader)
                .map_err(|e| KeyError::Unsupported(format!("bad PEM: {e}")))?;
            match item {
                None => return Err(KeyError::NoKey),
                Some(rustls_pemfile::Item::Pkcs8Key(der)) => {
                    return Self::from_pkcs8(der.secret_pkcs8_der())
                }
                Some(rustls_pemfile::Item::Sec1Key(_)) => {
                    return Err(KeyError::NotPkcs8("SEC1 (BEGIN EC PRIVATE KEY)"))
                }
                Some(rustls_pemfile::Item::Pkcs1Key(_)) => {
                    return Err(KeyError::Unsupported(
                        "an RSA key; tollgate signs with ES256 or EdDSA".to_string(),
                    ))
                }
                Some(_) => continue,
            }
        }
    }

    /// A PKCS#8 DER private key: P-256 first, then Ed25519 (v1 as OpenSSL writes it, or v2).
    pub fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng);
        if let Ok(pair) = ec {
            let public = PublicKey::with_thumbprint(
                Alg::Es256,
                Material::P256(pair.public_key().as_ref().to_vec()),
            );
            return Ok(SigningKey {
                public,
                pair: Pair::Es256(pair, rng),
            });
        }
        match Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            Ok(pair) => {
                let public = PublicKey::with_thumbprint(
                    Alg::EdDsa,
                    Material::Ed25519(pair.public_key().as_ref().to_vec()),
                );
                Ok(SigningKey {
                    public,
                    pair: Pair::EdDsa(pair),
                })
            }
            Err(e) => Err(KeyError::Unsupported(e.to_string())),
        }
    }

    /// A new private key as PKCS#8 PEM (what `tollgate gen-key` prints).
    pub fn generate_pem(alg: Alg) -> Result<String, KeyError> {
        let rng = SystemRandom::new();
        let doc = match alg {
            Alg::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Alg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
            Alg::Rs256 => {
                return Err(KeyError::Unsupported(
                    "tollgate generates ES256 or EdDSA keys".to_string(),
                ))
            }
        }
        .map_err(|_| KeyError::Unsupported("the random generator failed".to_string()))?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key's `kid` (its RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        self.public.kid.as_deref().unwrap_or_default()
    }

    pub fn alg(&self) -> Alg {
        self.public.alg
    }

    /// Signs `message`: a raw `r || s` for ES256 (RFC 7518 §3.4), 64 bytes for EdDSA.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ring::error::Unspecified> {
        match &self.pair {
            Pair::Es256(pair, rng) => Ok(pair.sign(rng, message)?.as_ref().to_vec()),
            Pair::EdDsa(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.alg)
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

// === impl PublicKey ===

impl PublicKey {
    fn with_thumbprint(alg: Alg, material: Material) -> PublicKey {
        let mut key = PublicKey {
            kid: None,
            alg,
            material,
        };
        key.kid = Some(key.thumbprint());
        key
    }

    /// RFC 7638: SHA-256 of the required members in lexicographic order, no spaces.
    pub fn thumbprint(&self) -> String {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let canonical = match &self.material {
            Material::P256(point) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(&point[1..33]),
                b64(&point[33..65])
            ),
            Material::Ed25519(x) => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(x)),
            Material::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
            }
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// The RFC 7517 JWK of this key, with `kid`, `alg` and `use`.
    pub fn to_jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let mut jwk = match &self.material {
            Material::P256(point) => json!({
                "kty": "EC", "crv": "P-256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
            Material::Ed25519(x) => json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(x) }),
            Material::Rsa { n, e } => json!({ "kty": "RSA", "n": b64(n), "e": b64(e) }),
        };
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// Reads one JWK of a JWKS. `None` for keys tollgate cannot use for signatures: other
    /// key types or curves, encryption keys, or an `alg` other than the key type's.
    pub fn from_jwk(jwk: &Value) -> Option<PublicKey> {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| text(name).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        if text("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let (alg, material) = match (text("kty")?, text("crv")) {
            ("EC", Some("P-256")) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Alg::Es256, Material::P256(point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = bytes("x")?;
                if x.len() != 32 {
                    return None;
                }
                (Alg::EdDsa, Material::Ed25519(x))
            }
            ("RSA", _) => {
                let (n, e) = (bytes("n")?, bytes("e")?);
                (Alg::Rs256, Material::Rsa { n, e })
            }
            _ => return None,
        };
        if text("alg").is_some_and(|a| a != alg.name()) {
            return None;
        }
        Some(PublicKey {
            kid: text("kid").map(str::to_string),
            alg,
            material,
        })
    }

    /// True when `signature` over `message` was made with this key by `alg`, which must be
    /// the key's own algorithm.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if alg != self.alg {
            return false;
        }
        match &self.material {
            Material::P256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            Material::Ed25519(x) => signature::UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
            Material::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

// === impl SigningKeys ===

impl SigningKeys {
    pub fn new(current: SigningKey, previous: Vec<PublicKey>) -> SigningKeys {
        let mut public = vec![current.public().clone()];
        public.extend(previous);
        SigningKeys { current, public }
    }

    /// The accepted key named `kid`.
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.public.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// The RFC 7517 JWK Set of every accepted key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.public.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("current", &self.current)
            .field("public", &self.public)
            .finish()
    }
}

/// PEM armour: base64 in 64-character lines (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
