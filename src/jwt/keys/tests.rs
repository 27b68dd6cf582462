use super::*;

/// RFC 7638 §3.1's example key and thumbprint.
#[test]
fn rsa_thumbprint_matches_rfc_7638_example() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let key = PublicKey::from_jwk(&jwk).expect("an RSA signing key");
    assert_eq!(
        key.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(key.kid.as_deref(), Some("2011-04-29"));
}

#[test]
fn generated_keys_load_and_their_kid_is_the_thumbprint_of_their_jwk() {
    for alg in [Alg::Es256, Alg::EdDsa] {
        let pem = SigningKey::generate_pem(alg).expect("generates");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let key = SigningKey::from_pem(&pem).expect("loads");
        assert_eq!(key.alg(), alg);
        let jwk = key.public().to_jwk();
        let back = PublicKey::from_jwk(&jwk).expect("reads back");
        assert_eq!(back.kid.as_deref(), Some(key.kid()));
        assert_eq!(back.thumbprint(), key.kid());
        assert!(jwk.get("d").is_none(), "no private part in {jwk}");
        let sig = key.sign(b"message").expect("signs");
        assert!(back.verify(alg, b"message", &sig));
        assert!(!back.verify(alg, b"messagE", &sig));
    }
}

#[test]
fn a_key_verifies_only_with_its_own_algorithm() {
    let key = SigningKey::from_pem(&SigningKey::generate_pem(Alg::Es256).expect("generates"))
        .expect("loads");
    let sig = key.sign(b"m").expect("signs");
    assert!(key.public().verify(Alg::Es256, b"m", &sig));
    assert!(!key.public().verify(Alg::EdDsa, b"m", &sig));
    assert!(!key.public().verify(Alg::Rs256, b"m", &sig));
}

#[test]
fn only_signature_algorithms_on_the_allow_list_parse() {
    for bad in [
        "none", "None", "HS256", "HS512", "ES384", "PS256", "es256", "",
    ] {
        assert_eq!(Alg::parse(bad), None, "{bad}");
    }
    for good in ["ES256", "EdDSA", "RS256"] {
        assert_eq!(Alg::parse(good).map(Alg::name), Some(good));
    }
}

#[test]
fn unusable_jwks_entries_are_skipped() {
    let cases = [
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
        json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"}),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "HS256"}),
    ];
    for jwk in cases {
        assert!(PublicKey::from_jwk(&jwk).is_none(), "{jwk}");
    }
}

#[test]
fn keys_that_are_not_pkcs8_p256_or_ed25519_are_refused_with_a_hint() {
    assert!(matches!(
        SigningKey::from_pem("nothing"),
        Err(KeyError::NoKey)
    ));
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";
    let e = SigningKey::from_pem(sec1).expect_err("SEC1");
    assert!(e.to_string().contains("openssl pkcs8 -topk8"), "{e}");
    let junk = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
    assert!(matches!(
        SigningKey::from_pem(junk),
        Err(KeyError::Unsupported(_))
    ));
}

/// A throwaway RSA key made for this test (`openssl genpkey -algorithm RSA`): tollgate never
/// signs with RSA, but third-party issuers do, and their JWKs must verify.
const TEST_RSA_PKCS8: &str = include_str!("test-rsa-2048.pem");

#[test]
fn an_rs256_signature_verifies_with_the_issuers_rsa_jwk() {
    let der = match rustls_pemfile::read_one(&mut TEST_RSA_PKCS8.as_bytes()) {
        Ok(Some(rustls_pemfile::Item::Pkcs8Key(der))) => der,
        _ => panic!("the fixture is a PKCS#8 key"),
    };
    let pair = signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("an RSA key");
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        b"header.payload",
        &mut sig,
    )
    .expect("signs");
    let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = json!({
        "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(&parts.n), "e": URL_SAFE_NO_PAD.encode(&parts.e),
    });
    let key = PublicKey::from_jwk(&jwk).expect("an RSA signing key");
    assert_eq!(key.alg, Alg::Rs256);
    assert!(key.verify(Alg::Rs256, b"header.payload", &sig));
    assert!(!key.verify(Alg::Rs256, b"header.payloaD", &sig));
    assert!(!key.verify(Alg::Es256, b"header.payload", &sig));
    // tollgate refuses it as a signing key, with a reason.
    let e = SigningKey::from_pem(TEST_RSA_PKCS8).expect_err("not a signing key of ours");
    assert!(e.to_string().contains("not an ECDSA P-256"), "{e}");
}
