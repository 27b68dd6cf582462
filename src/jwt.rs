//! JSON Web Tokens as tollgate uses them: RFC 9068 access tokens that it signs (ES256 or
//! EdDSA, with `ring`), and the checks a guard makes of a JWT, its own or a third-party
//! issuer's.
//!
//! - [`keys`]: signing keys from PKCS#8 PEM, public keys as RFC 7517 JWKs, `kid` as the
//!   RFC 7638 thumbprint, signature checks for an allow-list of algorithms (never `none`,
//!   never HMAC: a public key must never be usable as a MAC secret).
//! - [`compact`]: the RFC 7515 compact serialization (`header.payload.signature`), pure.
//! - [`claims`]: the claims tollgate issues, and the RFC 9068 §4 checks of received ones.
//!
//! Nothing here does IO: the JWKS fetcher lives in `verify::jwks`, key files are read by the
//! config.

pub mod claims;
pub mod compact;
pub mod keys;

pub use claims::{AccessClaims, ClaimRules, Refusal};
pub use keys::{Alg, KeyError, PublicKey, SigningKey, SigningKeys};

/// The `typ` header of an RFC 9068 access token.
pub const TYP_AT_JWT: &str = "at+jwt";
