//! Micro-benchmarks of the per-request hot path, without any network: route matching,
//! a verification-cache hit, the header rewrite, the three chained the way
//! `Gateway::handle` chains them, and the fast lane's parsing and encoding. See `benches/README.md` for the method.
//!
//! `cargo bench --bench hot_path` (add a filter such as `-- route` to run a subset).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{self, HeaderMap, HeaderValue};
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate::clock::SystemClock;
use tollgate::config::{VerifyConfig, VerifySource, WhenStoreDown};
use tollgate::gateway::headers::{self as gw_headers, ForwardedFor};
use tollgate::gateway::{guard, route};
use tollgate::metrics::Metrics;
use tollgate::server::PROTO_HTTP;
use tollgate::store::memory::MemoryStore;
use tollgate::store::{token_hash, Record, RecordKind, RecordState, TokenHash, TokenStore};
use tollgate::verify::cache::VerifyCache;
use tollgate::verify::{LocalVerifier, Principal, TokenVerifier, Verdict, VerifyError};

/// A 256-bit URL-safe token, shaped like the ones tollgate issues.
const TOKEN: &str = "q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9oNiKfHxWjQ";

/// `(host, path_prefix)` of a ~20-route table like a real edge config.
const ROUTES: [(Option<&str>, &str); 20] = [
    (None, "/"),
    (None, "/api"),
    (None, "/api/mail"),
    (None, "/api/mail/send"),
    (None, "/api/calendar"),
    (None, "/api/calendar/events"),
    (None, "/api/contacts"),
    (None, "/api/files"),
    (None, "/api/files/upload"),
    (None, "/api/search"),
    (None, "/api/billing"),
    (None, "/api/billing/invoices"),
    (None, "/api/admin"),
    (None, "/api/v2/mail"),
    (None, "/api/v2/calendar"),
    (None, "/static"),
    (None, "/health"),
    (Some("api.example.com"), "/api/mail"),
    (Some("admin.example.com"), "/"),
    (Some("files.example.com"), "/download"),
];

/// A request that misses the three longest prefixes and lands on a host-specific route.
const PATH: &str = "/api/mail/messages/18f3a2/attachments";
const HOST: &str = "API.example.com:8080";

// === a verifier that always says "active" ===

struct AlwaysActive(Principal);

impl TokenVerifier for AlwaysActive {
    fn verify<'a>(
        &'a self,
        _token: &'a str,
        _hash: &'a TokenHash,
    ) -> Pin<Box<dyn Future<Output = Result<Verdict, VerifyError>> + Send + 'a>> {
        let principal = self.0.clone();
        Box::pin(async move { Ok(Verdict::Active(principal)) })
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}

fn principal() -> Principal {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 3600;
    Principal::new(
        "reports".into(),
        "reports".into(),
        None,
        vec!["email".into(), "email.send".into()],
        Some(exp),
    )
    .expect("plain ASCII fields")
}

/// A verification cache whose entry for [`TOKEN`] is already warm.
fn warm_cache(rt: &tokio::runtime::Runtime) -> VerifyCache {
    let cfg = VerifyConfig {
        source: VerifySource::Local,
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(5),
        cache_capacity: 100_000,
        max_stale: Duration::from_secs(1),
        stale_grace: Duration::from_secs(300),
    };
    let cache = VerifyCache::new(
        &cfg,
        Arc::new(AlwaysActive(principal())),
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
    );
    rt.block_on(async {
        let verdict = cache
            .verify(TOKEN, WhenStoreDown::ServeCached)
            .await
            .expect("verifier answers");
        assert!(matches!(verdict, Verdict::Active(_)));
    });
    cache
}

/// What a browser-ish API client sends, including headers the rewrite must touch.
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &'static str, value: &'static str| {
        h.append(name, HeaderValue::from_static(value));
    };
    add("host", HOST);
    add("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0");
    add("accept", "application/json, text/plain;q=0.9, */*;q=0.8");
    add("accept-encoding", "gzip, deflate, br");
    add("accept-language", "en-GB,en;q=0.9");
    add(
        "authorization",
        "Bearer q5Xv0n3Jd8kZ1wYhR2bTgM7cLpE4sVaU9oNiKfHxWjQ",
    );
    add("connection", "keep-alive");
    add("keep-alive", "timeout=5");
    add("cookie", "session=abc123; theme=dark");
    add("x-request-id", "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b");
    add("x-forwarded-for", "203.0.113.7");
    add("x-auth-subject", "spoofed-admin");
    add("cache-control", "no-cache");
    h
}

fn forwarded<'a>(client_ip: &'a HeaderValue, headers: &HeaderMap) -> ForwardedFor<'a> {
    ForwardedFor {
        client_ip,
        proto: &PROTO_HTTP,
        host: headers.get(header::HOST).cloned(),
        request_id: &REQUEST_ID,
    }
}

static REQUEST_ID: HeaderValue = HeaderValue::from_static("6f1c2d3e4b5a69788a9b0c1d2e3f4a5b");

fn table() -> route::RouteTable {
    route::RouteTable::new(ROUTES)
}

fn bench_route(c: &mut Criterion) {
    let table = table();
    let mut group = c.benchmark_group("route");
    group.bench_function("normalise_and_find", |b| {
        b.iter(|| {
            let path = route::normalise_path(black_box(PATH)).expect("valid path");
            let host = route::normalise_host(black_box(HOST));
            black_box(table.find(Some(&host), &path))
        })
    });
    // The slow path: a path that must be decoded and have dot-segments removed.
    group.bench_function("normalise_dotted_and_find", |b| {
        b.iter(|| {
            let raw = black_box("/api/mail/./drafts/../messages/%7E18f3a2/attachments");
            let path = route::normalise_path(raw).expect("valid path");
            black_box(table.find(None, &path))
        })
    });
    group.finish();
}

fn bench_verify_cache_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let cache = warm_cache(&rt);
    c.bench_function("verify_cache/hit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                cache
                    .verify(black_box(TOKEN), WhenStoreDown::ServeCached)
                    .await
                    .expect("cached"),
            )
        })
    });
}

/// Distinct tokens the miss benchmark cycles through, against a cache of a tenth of that: a
/// token comes round again only after ten times the cache's capacity of others, so under
/// CLOCK every verification is a miss.
const MISS_TOKENS: usize = 100_000;

/// The cold path's work on the runtime's worker, without the SQLite lookup thread (the
/// memory store answers at once): a cache miss, the local verifier turning the record into
/// an answer (its identity shared by every token, as a client's tokens are), the insert
/// with its eviction. `benches/cold_path.sh` measures the whole cold path, SQLite included.
fn bench_verify_cache_miss_local(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let store = Arc::new(MemoryStore::default());
    let tokens: Vec<String> = (0..MISS_TOKENS)
        .map(|n| format!("cold-token-{n:08}-q5Xv0n3Jd8kZ1wYhR2bT"))
        .collect();
    rt.block_on(async {
        for token in &tokens {
            let record = Record {
                kind: RecordKind::Access,
                state: RecordState::Active,
                grant_id: format!("grant-{token}"),
                client_id: "reports".into(),
                sub: "reports".into(),
                username: None,
                scopes: vec!["email".into(), "email.send".into()],
                issued_at: now,
                expires_at: now + 3600,
                grant_expires_at: now + 3600,
                redirect_uri: None,
                code_challenge: None,
                name: None,
                email: None,
                csrf: None,
                browser: None,
                audiences: Vec::new(),
                jkt: None,
            };
            store
                .insert(token_hash(token), record)
                .await
                .expect("memory store");
        }
    });
    let cfg = VerifyConfig {
        source: VerifySource::Local,
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(5),
        cache_capacity: (MISS_TOKENS / 10) as u64,
        max_stale: Duration::from_secs(1),
        stale_grace: Duration::from_secs(300),
    };
    let verifier = LocalVerifier::new(store, Arc::new(SystemClock), "https://auth.example".into());
    let cache = VerifyCache::new(
        &cfg,
        Arc::new(verifier),
        Arc::new(SystemClock),
        Arc::new(Metrics::new()),
    );
    let mut next = 0;
    c.bench_function("verify_cache/miss_local", |b| {
        b.to_async(&rt).iter(|| {
            let token = &tokens[next % MISS_TOKENS];
            next += 1;
            let cache = &cache;
            async move {
                black_box(
                    cache
                        .verify(black_box(token), WhenStoreDown::ServeCached)
                        .await
                        .expect("stored"),
                )
            }
        })
    });
}

fn bench_headers(c: &mut Criterion) {
    let template = request_headers();
    let client_ip = HeaderValue::from_static("198.51.100.23");
    let identity = principal().headers.clone();
    // The header map is a per-request input: each iteration gets a fresh copy, made outside
    // the timing and still in cache, as a just-parsed request's map is. (Large batches of
    // copies would be cache-cold and add ~50% here; one timer read pair per iteration,
    // tens of ns, is the smaller error.)
    c.bench_function("headers/prepare_request", |b| {
        b.iter_batched(
            || template.clone(),
            |mut headers| {
                let fwd = forwarded(&client_ip, &headers);
                gw_headers::prepare_request(&mut headers, fwd, Some(&identity), false);
                headers
            },
            BatchSize::PerIteration,
        )
    });
}

/// Route → extract → cache hit → scope check → header rewrite, as `Gateway::handle` does
/// them for a protected route (minus the upstream call).
fn bench_together(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let cache = warm_cache(&rt);
    let table = table();
    let template = request_headers();
    let client_ip = HeaderValue::from_static("198.51.100.23");
    let required = vec!["email".to_string()];
    c.bench_function("hot_path/route_verify_rewrite", |b| {
        b.to_async(&rt).iter_batched(
            || template.clone(),
            |mut headers| {
                let (table, cache, client_ip, required) = (&table, &cache, &client_ip, &required);
                async move {
                    let path = route::normalise_path(PATH).expect("valid path");
                    let host = headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(route::normalise_host);
                    let index = table.find(host.as_deref(), &path).expect("a route");
                    let principal = match guard::extract(&headers) {
                        guard::Credential::Bearer(token) => {
                            match cache.verify(token, WhenStoreDown::ServeCached).await {
                                Ok(Verdict::Active(p)) => p,
                                _ => unreachable!("the token is cached as active"),
                            }
                        }
                        _ => unreachable!("the request carries a bearer token"),
                    };
                    assert!(guard::has_all_scopes(&principal.scopes, required));
                    let fwd = forwarded(client_ip, &headers);
                    gw_headers::prepare_request(&mut headers, fwd, Some(&principal.headers), false);
                    (index, headers)
                }
            },
            BatchSize::PerIteration,
        )
    });
}

/// The fast lane's own wire work for one request: parse a browser-sized request head into
/// a header map, encode the rewritten head for the upstream, parse the upstream's response
/// head and encode the client's version (the sockets are not in it).
fn bench_fast_lane_wire(c: &mut Criterion) {
    use tollgate::gateway::fast::wire;
    let request = bytes::Bytes::from(format!(
        "GET /api/mail/inbox?page=2 HTTP/1.1\r\nHost: api.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n\
         Accept-Encoding: gzip, br\r\nAccept-Language: en-GB,en;q=0.9\r\n\
         Authorization: Bearer {TOKEN}\r\nX-Request-Id: 7f2c1a\r\n\r\n"
    ));
    let response = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 22 Nov 2026 05:59:53 GMT\r\n\
        Content-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n";
    let mut out = Vec::with_capacity(1024);
    c.bench_function("fast_lane/wire_round_trip", |b| {
        b.iter(|| {
            let wire::ParsedRequest::Complete(head) = wire::parse_request(black_box(&request))
            else {
                panic!("the bench request is on the fast lane");
            };
            out.clear();
            wire::encode_request(
                &head.method,
                head.target.as_str(),
                "127.0.0.1:3000",
                &head.headers,
                &mut out,
            );
            out.clear();
            let parsed = wire::parse_response(black_box(response), false, &mut out);
            black_box((&out, parsed));
        })
    });
}

/// The access log's two halves: what a request does (build its entry) and what the writer
/// thread does (format it as a JSON line). Both count in the process's CPU per request.
fn bench_access_log(c: &mut Criterion) {
    use tollgate::access_log::{format, Entry, Notes};
    let mut headers = request_headers();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101"),
    );
    let request_id = gw_headers::new_request_id();
    let peer: std::net::IpAddr = [192, 0, 2, 7].into();
    let started = std::time::Instant::now();
    // What the phases hand over: shared, so a request clones them.
    let (route, upstream): (Arc<str>, Arc<str>) =
        (Arc::from("mail"), Arc::from("http://127.0.0.1:3000/"));
    let principal = principal();
    let build = || {
        let mut entry = Entry::begin(
            &http::Method::GET,
            http::Version::HTTP_11,
            PATH,
            &headers,
            peer,
            &request_id,
        );
        entry.note(Notes {
            route: Some(route.clone()),
            principal: Some(principal.clone()),
            upstream: Some(upstream.clone()),
            upstream_time: Some(Duration::from_micros(1_234)),
        });
        entry.finish(http::StatusCode::OK, 11, started);
        entry
    };
    c.bench_function("access_log/entry", |b| b.iter(|| black_box(build())));
    let entry = build();
    let mut line = String::with_capacity(512);
    c.bench_function("access_log/json_line", |b| {
        b.iter(|| {
            line.clear();
            format::json(black_box(&entry), &mut line);
            black_box(&line);
        })
    });
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
    targets = bench_route, bench_verify_cache_hit, bench_verify_cache_miss_local, bench_headers, bench_together,
        bench_fast_lane_wire, bench_access_log
}
criterion_main!(benches);
