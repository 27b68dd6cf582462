//! Secrets: random tokens, client-secret hashes, and argon2id password hashes.
//!
//! Nothing here is hand-rolled cryptography: randomness comes from `rand`'s CSPRNG
//! (reseeded from the OS), hashing from `sha2` and `argon2`, comparison from `subtle`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of a fast client-secret hash: `sha256:` and 64 lower-case hex digits.
pub const SHA256_PREFIX: &str = "sha256:";

/// 256 random bits, URL-safe base64 without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `secret_hash` for a high-entropy generated secret. SHA-256 is enough at 256 bits of
/// entropy, and keeps client authentication cheap (no argon2 run per token request).
pub fn fast_secret_hash(secret: &str) -> String {
    format!("{SHA256_PREFIX}{}", hex(&Sha256::digest(secret.as_bytes())))
}

/// The kinds of `secret_hash` a client may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretHashKind {
    /// `sha256:<hex>`: checked inline.
    Sha256,
    /// An argon2 PHC string: checked on the blocking pool.
    Argon2,
}

/// Which kind of hash `stored` is, or `None` if it is neither.
pub fn secret_hash_kind(stored: &str) -> Option<SecretHashKind> {
    if let Some(hex_digits) = stored.strip_prefix(SHA256_PREFIX) {
        let ok = hex_digits.len() == 64 && hex_digits.bytes().all(|b| b.is_ascii_hexdigit());
        return ok.then_some(SecretHashKind::Sha256);
    }
    PasswordHash::new(stored)
        .ok()
        .filter(|h| h.algorithm.as_str().starts_with("argon2"))
        .map(|_| SecretHashKind::Argon2)
}

/// Checks a presented secret against a stored hash in constant time (for SHA-256), or with
/// argon2's verifier (which is constant-time itself). Argon2 is slow: call it off the
/// async workers.
pub fn verify_secret(presented: &str, stored: &str) -> bool {
    match secret_hash_kind(stored) {
        Some(SecretHashKind::Sha256) => {
            let want = stored[SHA256_PREFIX.len()..].to_ascii_lowercase();
            let got = hex(&Sha256::digest(presented.as_bytes()));
            bool::from(got.as_bytes().ct_eq(want.as_bytes()))
        }
        Some(SecretHashKind::Argon2) => verify_password(presented, stored),
        None => false,
    }
}

/// argon2id with the crate's default (OWASP-recommended) parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&random_salt()).map_err(|_| {
        argon2::password_hash::Error::SaltInvalid(
            argon2::password_hash::errors::InvalidValue::Malformed,
        )
    })?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against an argon2 PHC string. Slow by design.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    salt
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_256_bits_url_safe_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn fast_hash_verifies_only_its_secret() {
        let hash = fast_secret_hash("s3cret");
        assert_eq!(secret_hash_kind(&hash), Some(SecretHashKind::Sha256));
        assert!(verify_secret("s3cret", &hash));
        assert!(!verify_secret("s3cret ", &hash));
        assert!(!verify_secret("", &hash));
    }

    #[test]
    fn argon2_hash_verifies_only_its_password() {
        let phc = hash_password("correct horse").expect("hashing works");
        assert!(phc.starts_with("$argon2id$"));
        assert_eq!(secret_hash_kind(&phc), Some(SecretHashKind::Argon2));
        assert!(verify_secret("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
    }

    #[test]
    fn unknown_hash_formats_never_verify() {
        assert_eq!(secret_hash_kind("plaintext"), None);
        assert_eq!(secret_hash_kind("sha256:abc"), None);
        assert!(!verify_secret("plaintext", "plaintext"));
    }
}
