use super::*;
use crate::jwt::SigningKey;
use serde_json::json;

const NOW: u64 = 1_700_000_000;
const URL: &str = "https://api.example/api/mail/inbox";
const TOKEN: &str = "access-token-value";

fn key(alg: Alg) -> SigningKey {
    SigningKey::from_pem(&SigningKey::generate_pem(alg).expect("generates")).expect("parses")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A proof signed by `key` with `header` and `claims` changed from the good ones (a null
/// value removes a member).
fn proof(key: &SigningKey, header: Value, claims: Value) -> String {
    let mut h = json!({"typ": "dpop+jwt", "alg": key.alg().name(), "jwk": key.public().to_jwk()});
    let mut c = json!({
        "jti": "id-1", "htm": "GET", "htu": URL, "iat": NOW - 5, "ath": ath(TOKEN),
    });
    for (target, changes) in [(&mut h, header), (&mut c, claims)] {
        for (k, v) in changes.as_object().expect("an object") {
            if v.is_null() {
                target.as_object_mut().expect("object").remove(k);
            } else {
                target[k] = v.clone();
            }
        }
    }
    let input = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(c.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes()).expect("signs");
    format!("{input}.{}", b64(&signature))
}

fn expected(htu: &str) -> Expected<'_> {
    Expected {
        method: "GET",
        htu,
        access_token: Some(TOKEN),
        now: NOW,
    }
}

fn normal(url: &str) -> String {
    htu::normalise(url).expect("a URL")
}

#[test]
fn a_good_proof_gives_its_key_thumbprint() {
    let htu = normal(URL);
    for alg in [Alg::Es256, Alg::EdDsa] {
        let key = key(alg);
        let got = check(&proof(&key, json!({}), json!({})), &expected(&htu)).expect("valid");
        assert_eq!(got.jkt, key.public().thumbprint());
        assert_eq!(got.jti, "id-1");
        assert_eq!(got.iat, NOW - 5);
    }
}

#[test]
fn proofs_are_refused_by_rule() {
    let key = key(Alg::Es256);
    let other = self::key(Alg::Es256);
    let ed = self::key(Alg::EdDsa);
    let htu = normal(URL);
    let mut private = key.public().to_jwk();
    private["d"] = json!("AAAA");
    let cases: Vec<(String, ProofError)> = vec![
        ("not-a-jws".to_string(), ProofError::Malformed),
        (
            proof(&key, json!({"typ": "JWT"}), json!({})),
            ProofError::Typ,
        ),
        (
            proof(&key, json!({"typ": null}), json!({})),
            ProofError::Typ,
        ),
        (
            proof(&key, json!({"alg": "none"}), json!({})),
            ProofError::Alg,
        ),
        (
            proof(&key, json!({"alg": "HS256"}), json!({})),
            ProofError::Alg,
        ),
        (
            proof(&key, json!({"alg": "EdDSA"}), json!({})),
            ProofError::Alg,
        ),
        (
            proof(&key, json!({"jwk": null}), json!({})),
            ProofError::Key,
        ),
        (
            proof(&key, json!({"jwk": private}), json!({})),
            ProofError::Key,
        ),
        (
            proof(&key, json!({"jwk": {"kty": "oct", "k": "AAAA"}}), json!({})),
            ProofError::Key,
        ),
        // Signed by one key, naming another.
        (
            proof(&key, json!({"jwk": other.public().to_jwk()}), json!({})),
            ProofError::Signature,
        ),
        (
            proof(
                &ed,
                json!({"jwk": key.public().to_jwk(), "alg": "ES256"}),
                json!({}),
            ),
            ProofError::Signature,
        ),
        (
            proof(&key, json!({}), json!({"htm": "POST"})),
            ProofError::Method,
        ),
        (
            proof(&key, json!({}), json!({"htm": "get"})),
            ProofError::Method,
        ),
        (
            proof(&key, json!({}), json!({"htm": null})),
            ProofError::Method,
        ),
        (
            proof(
                &key,
                json!({}),
                json!({"htu": "https://api.example/api/mail"}),
            ),
            ProofError::Url,
        ),
        (
            proof(
                &key,
                json!({}),
                json!({"htu": "http://api.example/api/mail/inbox"}),
            ),
            ProofError::Url,
        ),
        (
            proof(&key, json!({}), json!({"htu": null})),
            ProofError::Url,
        ),
        (
            proof(&key, json!({}), json!({"iat": NOW - MAX_AGE_SECS - 1})),
            ProofError::Stale,
        ),
        (
            proof(&key, json!({}), json!({"iat": NOW + LEEWAY_SECS + 1})),
            ProofError::Future,
        ),
        (
            proof(&key, json!({}), json!({"iat": null})),
            ProofError::Claims,
        ),
        (
            proof(&key, json!({}), json!({"iat": "now"})),
            ProofError::Claims,
        ),
        (
            proof(&key, json!({}), json!({"jti": null})),
            ProofError::Jti,
        ),
        (proof(&key, json!({}), json!({"jti": ""})), ProofError::Jti),
        (
            proof(&key, json!({}), json!({"ath": ath("another token")})),
            ProofError::Ath,
        ),
        (
            proof(&key, json!({}), json!({"ath": null})),
            ProofError::Ath,
        ),
        ("a".repeat(MAX_PROOF_LEN + 1), ProofError::Malformed),
    ];
    for (proof, want) in cases {
        assert_eq!(check(&proof, &expected(&htu)), Err(want), "{proof}");
    }
}

#[test]
fn a_tampered_proof_fails_its_signature() {
    let key = key(Alg::EdDsa);
    let good = proof(&key, json!({}), json!({}));
    let (input, signature) = good.rsplit_once('.').expect("three parts");
    let (header, _) = input.split_once('.').expect("three parts");
    let claims = json!({"jti": "id-2", "htm": "GET", "htu": URL, "iat": NOW, "ath": ath(TOKEN)});
    let forged = format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    );
    assert_eq!(
        check(&forged, &expected(&normal(URL))),
        Err(ProofError::Signature)
    );
}

#[test]
fn the_window_edges_are_accepted_and_equivalent_urls_match() {
    let key = key(Alg::Es256);
    let htu = normal(URL);
    for iat in [NOW - MAX_AGE_SECS, NOW + LEEWAY_SECS] {
        let p = proof(&key, json!({}), json!({"iat": iat}));
        assert!(check(&p, &expected(&htu)).is_ok(), "iat {iat}");
    }
    let p = proof(
        &key,
        json!({"typ": "application/DPoP+JWT"}),
        json!({"htu": "HTTPS://API.example:443/api/mail/./inbox?page=2"}),
    );
    assert!(check(&p, &expected(&htu)).is_ok());
}

#[test]
fn at_the_token_endpoint_no_ath_is_needed() {
    let key = key(Alg::Es256);
    let htu = normal("https://as.example/oauth/token");
    let p = proof(
        &key,
        json!({}),
        json!({"htm": "POST", "htu": "https://as.example/oauth/token", "ath": null}),
    );
    let want = Expected {
        method: "POST",
        htu: &htu,
        access_token: None,
        now: NOW,
    };
    assert_eq!(
        check(&p, &want).expect("valid").jkt,
        key.public().thumbprint()
    );
}

#[test]
fn ath_is_the_base64url_sha256_of_the_token() {
    // RFC 9449 §7.1 example.
    assert_eq!(
        ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}
