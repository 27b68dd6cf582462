//! The token endpoint's form (`protocol::Params::parse`) and the pure decisions taken on
//! it: `grant_type` (`GrantType::parse`), `scope` (`grant_scopes`) and the PKCE verifier
//! (`pkce_matches`). Never panics; a repeated parameter is always reported (RFC 6749 §3.2),
//! except `resource`, which RFC 8707 §2 lets repeat (every value kept, in order); an empty
//! value counts as absent; granted scopes are well-formed, distinct and allowed;
//! a verifier matches only the S256 challenge computed from it.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tollgate::config::{is_scope_token, GrantType};
use tollgate::oauth::protocol::{
    grant_scopes, is_valid_verifier_or_challenge, pkce_matches, Params,
};

/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fuzz_target!(|data: &[u8]| {
    let Ok(form) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(params) = Params::parse(form) else {
        return;
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(form).expect("Params::parse accepted it");
    let repeated = pairs
        .iter()
        .enumerate()
        .any(|(i, (k, _))| k != "resource" && pairs[..i].iter().any(|(k2, _)| k2 == k));
    assert_eq!(params.duplicated().is_some(), repeated);
    let resources: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "resource")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(params.resources().iter().collect::<Vec<_>>(), resources);
    for (name, _) in &pairs {
        if let Some(v) = params.get(name) {
            assert!(!v.is_empty());
        }
    }

    if let Some(grant) = params.get("grant_type").and_then(GrantType::parse) {
        assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
    }

    let allowed = [
        "email".to_string(),
        "email.send".to_string(),
        "a~b".to_string(),
    ];
    if let Ok(granted) = grant_scopes(params.get("scope"), &allowed) {
        assert!(granted
            .iter()
            .all(|s| allowed.contains(s) && is_scope_token(s)));
        for (i, s) in granted.iter().enumerate() {
            assert!(!granted[..i].contains(s), "{s} granted twice");
        }
    }

    if let Some(verifier) = params.get("code_verifier") {
        let matches = pkce_matches(verifier, CHALLENGE);
        assert_eq!(matches, verifier == VERIFIER);
        if is_valid_verifier_or_challenge(verifier) {
            let s256 = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            assert!(pkce_matches(verifier, &s256));
        }
    }
});
