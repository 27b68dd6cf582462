use super::*;
use crate::clock::ManualClock;
use crate::jwt::compact;
use crate::jwt::keys::{Alg, SigningKey};
use crate::store::memory::MemoryStore;
use crate::store::token_hash;
use crate::verify::{LocalVerifier, TokenVerifier, Verdict};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;
const TTL: u64 = 3600;
const ISSUER: &str = "https://as.example";
const MAX_STALE: Duration = Duration::from_secs(1);

fn pem(alg: Alg) -> String {
    SigningKey::generate_pem(alg).expect("generates")
}

fn load(pem: &str) -> SigningKey {
    SigningKey::from_pem(pem).expect("loads")
}

/// An `OwnJwt` whose current key is `current` and previous keys `previous`.
fn own(clock: &Arc<ManualClock>, current: &str, previous: &[&str], at_start: bool) -> OwnJwt {
    let previous = previous.iter().map(|p| load(p).public().clone()).collect();
    let keys = Arc::new(SigningKeys::new(load(current), previous));
    OwnJwt::new(
        keys,
        ISSUER.to_string(),
        Duration::from_secs(TTL),
        MAX_STALE,
        clock.clone(),
        at_start,
    )
}

fn claims(changes: Value) -> Value {
    let mut c = json!({
        "iss": ISSUER, "sub": "alice", "aud": ISSUER, "client_id": "mail-app",
        "scope": "email", "iat": NOW, "exp": NOW + TTL, "jti": "j", "username": "alice",
    });
    for (k, v) in changes.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

fn sign(key_pem: &str, claims: &Value) -> String {
    compact::sign(&load(key_pem), "at+jwt", claims).expect("signs")
}

/// A token with a hand-made header and signature.
fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn opened(own: &OwnJwt, token: &str, silent: Option<Duration>) -> Result<bool, String> {
    match own.open(token, &token_hash(token), silent) {
        Opened::Valid { needs_store, .. } => Ok(needs_store),
        Opened::Refused(r) => Err(r.to_string()),
        Opened::Revoked => Err("revoked".to_string()),
    }
}

#[test]
fn a_good_token_is_valid_without_the_store() {
    let clock = Arc::new(ManualClock::new(NOW));
    let current = pem(Alg::Es256);
    let own = own(&clock, &current, &[], false);
    let token = sign(&current, &claims(json!({})));
    assert_eq!(opened(&own, &token, None), Ok(false));
    assert_eq!(opened(&own, &token, Some(MAX_STALE)), Ok(false));
}

#[test]
fn bad_tokens_are_refused_by_rule() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (current, other) = (pem(Alg::Es256), pem(Alg::Es256));
    let own = own(&clock, &current, &[], false);
    let kid = load(&current).kid().to_string();
    let good = claims(json!({}));
    let signed = sign(&current, &good);
    let (head, rest) = signed.split_once('.').expect("three parts");
    let (_, sig) = rest.split_once('.').expect("three parts");
    let tampered_payload = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "mallory"})).to_string());
    let same_kid_other_key = {
        // Signed by another key, but naming ours.
        let t = sign(&other, &good);
        let (_, rest) = t.split_once('.').expect("parts");
        format!("{head}.{rest}")
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "tampered payload",
            format!("{head}.{tampered_payload}.{sig}"),
        ),
        ("other key, our kid", same_kid_other_key),
        (
            "alg none",
            forged(
                json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
                &good,
                b"",
            ),
        ),
        (
            "HS256",
            forged(
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                &good,
                b"mac",
            ),
        ),
        (
            "alg not the key's",
            forged(
                json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
                &good,
                &[0; 64],
            ),
        ),
        ("typ JWT", {
            let key = load(&current);
            let h = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(h.to_string()),
                URL_SAFE_NO_PAD.encode(good.to_string())
            );
            let s = key.sign(input.as_bytes()).expect("signs");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(s))
        }),
        ("unknown kid", sign(&other, &good)),
        ("expired", sign(&current, &claims(json!({"exp": NOW})))),
        (
            "not yet valid",
            sign(&current, &claims(json!({"nbf": NOW + 300}))),
        ),
        (
            "wrong issuer",
            sign(&current, &claims(json!({"iss": "https://evil"}))),
        ),
    ];
    for (what, token) in cases {
        assert!(opened(&own, &token, None).is_err(), "{what} was accepted");
    }
}

#[test]
fn a_previous_key_is_still_accepted_by_its_kid() {
    let clock = Arc::new(ManualClock::new(NOW));
    let (current, previous) = (pem(Alg::EdDsa), pem(Alg::Es256));
    let own = own(&clock, &current, &[&previous], false);
    let token = sign(&previous, &claims(json!({})));
    assert_eq!(opened(&own, &token, None), Ok(false));
}

#[test]
fn a_revoked_hash_is_denied_until_a_token_lifetime_has_passed_and_then_forgotten() {
    let clock = Arc::new(ManualClock::new(NOW));
    let current = pem(Alg::Es256);
    let own = own(&clock, &current, &[], false);
    let token = sign(&current, &claims(json!({})));
    own.revoked(&Revoked::Token(token_hash(&token)));
    assert_eq!(opened(&own, &token, None), Err("revoked".to_string()));
    clock.advance(TTL - 1);
    assert_eq!(opened(&own, &token, None), Err("revoked".to_string()));
    // Memory: entries past their token's life are dropped as new ones arrive.
    clock.advance(TTL + DENY_MARGIN_SECS);
    for i in 0..2000u32 {
        let mut hash = [0u8; 32];
        hash[..4].copy_from_slice(&i.to_be_bytes());
        own.revoked(&Revoked::Token(hash));
    }
    assert_eq!(own.denied_count(), 2000, "the expired entry was dropped");
    assert!(!own.deny.lock().until.contains_key(&token_hash(&token)));
}

#[test]
fn the_store_is_asked_while_revocations_may_be_missing() {
    let clock = Arc::new(ManualClock::new(NOW));
    let current = pem(Alg::Es256);
    // At start, with a store that may hold older revocations.
    let own_start = own(&clock, &current, &[], true);
    let token = sign(&current, &claims(json!({"exp": NOW + 2 * TTL + 600})));
    let short = sign(&current, &claims(json!({})));
    assert_eq!(opened(&own_start, &short, None), Ok(true));
    clock.advance(TTL + DENY_MARGIN_SECS);
    let fresh = sign(
        &current,
        &claims(json!({"iat": clock.now_unix(), "exp": clock.now_unix() + 60})),
    );
    assert_eq!(opened(&own_start, &fresh, None), Ok(false));
    // A token living longer than access_token_ttl: the deny set could forget it too soon.
    assert_eq!(opened(&own_start, &token, None), Ok(true));
    // The feed silent past max_stale.
    let silent = Some(MAX_STALE + Duration::from_millis(1));
    assert_eq!(opened(&own_start, &fresh, silent), Ok(true));
    assert_eq!(opened(&own_start, &fresh, Some(Duration::MAX)), Ok(true));
    // The feed lost its place.
    own_start.revoked(&Revoked::Everything);
    assert_eq!(opened(&own_start, &fresh, None), Ok(true));
}

#[tokio::test]
async fn the_local_verifier_accepts_a_jwt_it_has_no_record_of_without_asking_the_store() {
    // No record for the token exists: an answer from the store would be "inactive".
    let clock = Arc::new(ManualClock::new(NOW));
    let current = pem(Alg::Es256);
    let store = Arc::new(MemoryStore::default());
    let verifier = LocalVerifier::new(store.clone(), clock.clone(), ISSUER.to_string())
        .with_jwt(own(&clock, &current, &[], false));
    let token = sign(&current, &claims(json!({"aud": ["https://api.example"]})));
    let Ok(Verdict::Active(p)) = verifier.verify(&token, &token_hash(&token)).await else {
        panic!("not active");
    };
    assert_eq!(p.sub, "alice");
    assert_eq!(p.audiences, ["https://api.example"]);
    assert_eq!(p.exp, Some(NOW + TTL));
    verifier.revoked(&Revoked::Token(token_hash(&token)));
    assert!(matches!(
        verifier.verify(&token, &token_hash(&token)).await,
        Ok(Verdict::Inactive)
    ));
    // With the store asked (start window), the missing record makes it inactive.
    let checking = LocalVerifier::new(store, clock.clone(), ISSUER.to_string()).with_jwt(own(
        &clock,
        &current,
        &[],
        true,
    ));
    let other = sign(&current, &claims(json!({"jti": "k"})));
    assert!(matches!(
        checking.verify(&other, &token_hash(&other)).await,
        Ok(Verdict::Inactive)
    ));
}
