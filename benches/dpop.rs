//! Micro-benchmark of the guard's DPoP proof check (RFC 9449, issue 11), no network: what
//! `gateway::guard::check_proof` does for one request (the `DPoP` header, the request's
//! URL normalised, the proof's shape, header, `jwk`, signature and claims, `ath`), for
//! ES256 and EdDSA proofs; and spending a proof id in the in-process replay set. Target:
//! a proof check ≤ 80 µs. See `benches/README.md` for the method.
//!
//! `cargo bench --bench dpop`

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};
use tollgate::dpop::{self, replay::ReplayCache};
use tollgate::gateway::guard::{self, Target};
use tollgate::jwt::keys::{Alg, SigningKey};

const TOKEN: &str = "q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9oNiKfHxWjQ";
const PATH: &str = "/api/mail/inbox";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A proof for `GET http://gw.example:8080/api/mail/inbox` signed with a new `alg` key.
fn proof(alg: Alg) -> String {
    let key =
        SigningKey::from_pem(&SigningKey::generate_pem(alg).expect("generates")).expect("loads");
    let header = json!({"typ": "dpop+jwt", "alg": alg.name(), "jwk": key.public().to_jwk()});
    let claims = json!({
        "jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": format!("http://gw.example:8080{PATH}"),
        "iat": now(), "ath": dpop::ath(TOKEN),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes()).expect("signs");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn proof_check(c: &mut Criterion) {
    let scheme = HeaderValue::from_static("http");
    let authority = HeaderValue::from_static("gw.example:8080");
    let target = Target {
        method: &Method::GET,
        scheme: &scheme,
        authority: Some(&authority),
        path: PATH,
    };
    let mut group = c.benchmark_group("dpop_proof_check");
    for (name, alg) in [("es256", Alg::Es256), ("eddsa", Alg::EdDsa)] {
        let mut headers = HeaderMap::new();
        headers.insert("dpop", HeaderValue::from_str(&proof(alg)).expect("ASCII"));
        let now = now();
        assert!(guard::check_proof(&headers, &target, TOKEN, now).is_ok());
        group.bench_function(name, |b| {
            b.iter(|| guard::check_proof(black_box(&headers), &target, TOKEN, now))
        });
    }
    group.finish();
}

fn replay_spend(c: &mut Criterion) {
    let cache = ReplayCache::new(dpop::replay::DEFAULT_CAPACITY);
    let now = now();
    let mut n: u64 = 0;
    c.bench_function("dpop_replay/spend_new_id", |b| {
        b.iter(|| {
            n += 1;
            let key = dpop::replay::replay_key("thumbprint", &n.to_string());
            // A simulated clock a second on every 10,000 ids, each kept 61 s: ~610,000 live
            // ids, so the set stays within its capacity and sweeps as it would at that rate.
            let t = now + n / 10_000;
            cache.insert(black_box(key), t + 61, t)
        })
    });
}

criterion_group!(benches, proof_check, replay_spend);
criterion_main!(benches);
