//! Micro-benchmarks of JWT access-token verification (issue 11), no network: the local
//! verifier's JWT path cold (signature + claims + deny set, no store lookup) for ES256 and
//! EdDSA, and warm (a verify-cache hit) next to an opaque token's cache hit. See
//! `benches/README.md` for the method.
//!
//! `cargo bench --bench jwt`

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate::clock::{Clock, SystemClock};
use tollgate::config::{VerifyConfig, VerifySource, WhenStoreDown};
use tollgate::jwt::keys::{Alg, SigningKey, SigningKeys};
use tollgate::metrics::Metrics;
use tollgate::store::memory::MemoryStore;
use tollgate::store::{token_hash, Record, RecordKind, RecordState, TokenStore};
use tollgate::verify::cache::{Staleness, VerifyCache};
use tollgate::verify::own_jwt::OwnJwt;
use tollgate::verify::{LocalVerifier, TokenVerifier, Verdict};

const ISSUER: &str = "https://auth.example.com";
/// A 256-bit URL-safe token, shaped like the opaque ones tollgate issues.
const OPAQUE: &str = "q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9oNiKfHxWjQ";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A local verifier on a memory store (no store checks at start, as `App` sets it up for
/// `store = "memory"`), and a token it issued with `alg`.
fn verifier(alg: Alg, store: Arc<MemoryStore>) -> (LocalVerifier, String) {
    let pem = SigningKey::generate_pem(alg).expect("generates");
    let signer = SigningKey::from_pem(&pem).expect("loads");
    let keys = Arc::new(SigningKeys::new(
        SigningKey::from_pem(&pem).expect("loads"),
        vec![],
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let own = OwnJwt::new(
        keys,
        ISSUER.to_string(),
        Duration::from_secs(3600),
        Duration::from_secs(1),
        clock.clone(),
        false,
    );
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": ISSUER, "client_id": "mail-app",
        "scope": "email email.send", "iat": now(), "exp": now() + 3600,
        "jti": "yQ0iYh2uBq3n8M3m5oZk4r1W7sVt6xPaLcJdEfGhUiK", "username": "alice",
    });
    let token = tollgate::jwt::compact::sign(&signer, "at+jwt", &claims).expect("signs");
    let verifier = LocalVerifier::new(store, clock, ISSUER.to_string()).with_jwt(own);
    (verifier, token)
}

fn cache(store: Arc<MemoryStore>, verifier: LocalVerifier) -> VerifyCache {
    let cfg = VerifyConfig {
        source: VerifySource::Local,
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(5),
        cache_capacity: 100_000,
        max_stale: Duration::from_secs(1),
        stale_grace: Duration::from_secs(300),
    };
    let staleness = Staleness::new(store, cfg.max_stale, cfg.stale_grace);
    VerifyCache::with_staleness(
        &cfg,
        Arc::new(verifier),
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
        staleness,
    )
}

fn bench_cold(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("jwt_cold");
    for (name, alg) in [("es256", Alg::Es256), ("eddsa", Alg::EdDsa)] {
        let (verifier, token) = verifier(alg, Arc::new(MemoryStore::default()));
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                // The hash is the cache's in the server; it stays in the figure, as before.
                let token = black_box(&token);
                let verdict = verifier
                    .verify(token, &token_hash(token))
                    .await
                    .expect("answers");
                assert!(matches!(verdict, Verdict::Active(_)));
                black_box(verdict)
            })
        });
    }
    group.finish();
}

fn bench_warm(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("jwt_warm");
    for (name, alg) in [("es256", Alg::Es256), ("eddsa", Alg::EdDsa)] {
        let store = Arc::new(MemoryStore::default());
        let (verifier, token) = verifier(alg, store.clone());
        let cache = cache(store, verifier);
        rt.block_on(cache.verify(&token, WhenStoreDown::ServeCached))
            .expect("warms");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                black_box(
                    cache
                        .verify(black_box(&token), WhenStoreDown::ServeCached)
                        .await
                        .expect("cached"),
                )
            })
        });
    }
    // The same cache and verifier with an opaque token, for comparison.
    let store = Arc::new(MemoryStore::default());
    let record = Record {
        kind: RecordKind::Access,
        state: RecordState::Active,
        grant_id: "g".into(),
        client_id: "mail-app".into(),
        sub: "alice".into(),
        username: Some("alice".into()),
        scopes: vec!["email".into(), "email.send".into()],
        issued_at: now(),
        expires_at: now() + 3600,
        grant_expires_at: now() + 3600,
        redirect_uri: None,
        code_challenge: None,
        name: None,
        email: None,
        csrf: None,
        browser: None,
        audiences: Vec::new(),
        jkt: None,
    };
    rt.block_on(store.insert(token_hash(OPAQUE), record))
        .expect("stored");
    let (verifier, _) = verifier(Alg::Es256, store.clone());
    let cache = cache(store, verifier);
    rt.block_on(cache.verify(OPAQUE, WhenStoreDown::ServeCached))
        .expect("warms");
    group.bench_function("opaque", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .verify(black_box(OPAQUE), WhenStoreDown::ServeCached)
                    .await
                    .expect("cached"),
            )
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_cold, bench_warm
}
criterion_main!(benches);
