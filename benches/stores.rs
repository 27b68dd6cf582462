//! Store bench: the Redis store against the SQLite store, in one run, all in one process on
//! loopback (issue 9).
//!
//! Starts an in-memory upstream and two tollgates, one on each store (one
//! `client_credentials` client, a protected route `/`, `cache_ttl = "60s"`), and measures
//! each in turn, `STORES_ROUNDS` rounds alternating the stores, with `STORES_CONNS`
//! closed-loop keep-alive HTTP/1.1 connections:
//!
//! - `token`: `POST /oauth/token`, `client_credentials`: one new record stored per request.
//!   Every token issued (warm-up included) is kept for the next row.
//! - `cold verify`: `GET /` through the guard, each request with a token the guard has not
//!   seen (one of those just issued): every request is a verify-cache miss and a store
//!   lookup. The row ends when the tokens run out or its time is up.
//!
//! Then, per store, it starts three instances on one store (one Redis prefix, one SQLite
//! file), issues `STORES_REVOCATIONS` tokens at A, has B and C cache each, and revokes them
//! at A one at a time, each after a random wait of up to 150 ms; the lag of one revocation at
//! B (and at C) is the time from `/oauth/revoke`'s answer at A to the first 401 there,
//! polled every millisecond. Prints each round and a summary table. See
//! `benches/README.md` for the method and its caveats.
//!
//! `cargo bench --bench stores`; knobs: `STORES_SECONDS` (5), `STORES_WARMUP` (1),
//! `STORES_CONNS` (32), `STORES_ROUNDS` (3), `STORES_MAX_REQUESTS` (2000000 per row),
//! `STORES_REVOCATIONS` (200). Needs a Redis at 127.0.0.1:6379 (or `TOLLGATE_TEST_REDIS`);
//! its keys go under a prefix of the run's own, deleted at the end.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tollgate::{App, Config, Running};

/// The bench client's secret; its `secret_hash` is computed from it.
const SECRET: &str = "stores-bench-secret-not-for-production";
/// No single request may take longer than this; a slower one is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A revocation not seen at an instance after this long counts as lost (and as this lag).
const LAG_LIMIT: Duration = Duration::from_secs(3);
/// How often an instance is asked whether it still accepts a revoked token.
const LAG_POLL: Duration = Duration::from_millis(1);
/// Revocations are made this many ms apart at most (a random wait after the last arrived).
const JITTER_MS: u64 = 150;

struct Knobs {
    /// Run as a test (no `--bench`): short rows that must all answer right.
    smoke: bool,
    seconds: Duration,
    warmup: Duration,
    conns: usize,
    rounds: usize,
    max_requests: u64,
    revocations: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    Redis,
    Sqlite,
}

/// What one throughput row measured.
#[derive(Default)]
struct Outcome {
    ok: u64,
    errors: u64,
    window: Duration,
    /// Latencies of the successful requests in the window, in microseconds, sorted.
    latencies_us: Vec<u32>,
}

/// One store's throughput rows in one round.
struct Throughput {
    token: Outcome,
    cold: Outcome,
    /// Tokens the cold row used (all issued by the token row just before).
    tokens: usize,
}

/// One store's revocation lags.
struct Lags {
    /// At B and at C, sorted; a lost revocation counts as [`LAG_LIMIT`].
    lags: Vec<Duration>,
    lost: usize,
}

const STORES: [Store; 2] = [Store::Redis, Store::Sqlite];

fn main() {
    let knobs = Knobs::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(knobs));
}

async fn run(knobs: Knobs) {
    let redis = RedisRun::new();
    let upstream = spawn_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "stores: {} connections, {:?} warm-up + {:?} per row, {} round(s), cap {} requests per row, {} revocations",
        knobs.conns, knobs.warmup, knobs.seconds, knobs.rounds, knobs.max_requests, knobs.revocations
    );
    println!(
        "(client, gateways, upstream and Redis share this machine's CPUs: compare the stores within a round)"
    );
    // Both gateways stay up for all rounds, and the rounds alternate the stores, so the
    // machine's drift reaches both alike.
    let mut gateways = Vec::new();
    for store in STORES {
        let line = match store {
            Store::Redis => redis.store_lines("throughput"),
            Store::Sqlite => sqlite_line(&dir.path().join("throughput.db")),
        };
        let name = format!("throughput-{}", store.name());
        gateways.push(start(dir.path(), &name, &line, upstream).await);
    }
    let mut rounds = Vec::new();
    for round in 1..=knobs.rounds {
        println!(
            "
round {round}"
        );
        print_round_header();
        let mut this = Vec::new();
        for (store, gw) in STORES.into_iter().zip(&gateways) {
            let measured = throughput(gw, &knobs).await;
            if knobs.smoke {
                measured.assert_sound(store);
            }
            print_round_row(store, &measured);
            this.push(measured);
        }
        rounds.push(this);
    }
    for (store, gw) in STORES.into_iter().zip(gateways) {
        let counters = cache_counters(gw.internal_addr).await;
        println!(
            "{}: verify cache after all rounds: {counters}",
            store.name()
        );
        gw.shutdown().await;
    }

    let mut lags = Vec::new();
    for store in STORES {
        let line = match store {
            Store::Redis => redis.store_lines("lag"),
            Store::Sqlite => sqlite_line(&dir.path().join("lag.db")),
        };
        let measured = revocation_lags(dir.path(), &line, upstream, knobs.revocations).await;
        if knobs.smoke {
            measured.assert_sound(store);
        }
        lags.push(measured);
    }
    print_summary(&rounds, &lags, &knobs);
    redis.clean();
}

/// The token row, then the cold row with the tokens it issued.
async fn throughput(gw: &Running, knobs: &Knobs) -> Throughput {
    let (token, issued) = drive(gw.public_addr, Work::Token, knobs.warmup, knobs).await;
    let tokens = Arc::new(Pool::new(issued));
    // A short warm-up: it spends tokens the measurement needs.
    let cold_work = Work::Verify(tokens.clone());
    let (cold, _) = drive(gw.public_addr, cold_work, knobs.warmup / 10, knobs).await;
    Throughput {
        token,
        cold,
        tokens: tokens.used(),
    }
}

// === impl Knobs ===

impl Knobs {
    fn from_env() -> Self {
        // `cargo test --all-targets` runs this binary without `--bench`: then it is a smoke
        // test (every row answers right, revocations arrive), not a measurement.
        if !std::env::args().any(|a| a == "--bench") {
            return Self {
                smoke: true,
                seconds: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
                conns: 4,
                rounds: 1,
                max_requests: 5_000,
                revocations: 5,
            };
        }
        Self {
            smoke: false,
            seconds: Duration::from_secs_f64(env_num("STORES_SECONDS", 5.0)),
            warmup: Duration::from_secs_f64(env_num("STORES_WARMUP", 1.0)),
            conns: env_num("STORES_CONNS", 32.0).max(1.0) as usize,
            rounds: env_num("STORES_ROUNDS", 3.0).max(1.0) as usize,
            max_requests: env_num("STORES_MAX_REQUESTS", 2_000_000.0).max(1.0) as u64,
            revocations: env_num("STORES_REVOCATIONS", 200.0).max(1.0) as usize,
        }
    }
}

fn env_num(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// === the stores ===

impl Store {
    fn name(self) -> &'static str {
        match self {
            Store::Redis => "redis",
            Store::Sqlite => "sqlite",
        }
    }
}

fn sqlite_line(path: &Path) -> String {
    format!("store = \"sqlite:{}\"\n", path.display())
}

/// The run's Redis: its URL and key prefix; [`RedisRun::clean`] deletes the keys.
struct RedisRun {
    url: String,
    prefix: String,
}

impl RedisRun {
    /// Checks that Redis answers; panics saying how to start one when it does not.
    fn new() -> Self {
        let url = std::env::var("TOLLGATE_TEST_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let reachable = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if let Err(e) = reachable {
            panic!(
                "Redis is not reachable at {url} ({e}): start one with \
                 `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''`, \
                 or point TOLLGATE_TEST_REDIS at one"
            );
        }
        Self {
            url,
            prefix: format!("tollgate-bench-{:016x}:", rand::random::<u64>()),
        }
    }

    /// `[oauth]` lines for a store under `part` of the run's prefix.
    fn store_lines(&self, part: &str) -> String {
        format!(
            "store = \"{}\"\nstore_prefix = \"{}{part}:\"\n",
            self.url, self.prefix
        )
    }

    /// Deletes every key under the run's prefix (SCAN + DEL, bounded by what SCAN finds).
    fn clean(&self) {
        let Ok(mut conn) = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        let keys: Vec<String> =
            redis::Commands::scan_match::<_, String>(&mut conn, format!("{}*", self.prefix))
                .map(|iter| iter.filter_map(Result::ok).collect())
                .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: redis::RedisResult<()> = redis::Commands::del(&mut conn, chunk);
        }
    }
}

// === the servers ===

/// An upstream answering every request `200 {"ok":true}` from memory (HTTP/1.1).
async fn spawn_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: Request<Incoming>| async {
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(OK_BODY.as_bytes())))
                        .expect("static response");
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The body every upstream answer carries.
const OK_BODY: &str = r#"{"ok":true}"#;

/// Starts tollgate on `store` (its `[oauth]` store lines) with the config in `dir`.
async fn start(dir: &Path, name: &str, store: &str, upstream: SocketAddr) -> Running {
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"

[oauth]
{store}access_token_ttl = "10m"

[oauth.scopes]
bench = "Benchmark"

[[clients]]
id = "bench"
secret_hash = "{hash}"
grant_types = ["client_credentials"]
scopes = ["bench"]

[verify]
source = "local"
cache_ttl = "60s"
cache_capacity = 1000000

[[routes]]
name = "bench"
path_prefix = "/"
upstream = "http://{upstream}"
auth = "bearer"
scopes = ["bench"]
"#,
        hash = tollgate::secrets::fast_secret_hash(SECRET),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    App::start(config).await.expect("tollgate starts")
}

/// The `tollgate_verify_cache_total` samples, on one line.
async fn cache_counters(internal: SocketAddr) -> String {
    let Ok(response) = reqwest::get(format!("http://{internal}/metrics")).await else {
        return "(metrics unreachable)".to_string();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("tollgate_verify_cache_total"))
        .collect::<Vec<_>>()
        .join(" ")
}

// === the throughput rows ===

/// What a row's requests do.
#[derive(Clone)]
enum Work {
    /// `POST /oauth/token` (client_credentials); keeps the tokens.
    Token,
    /// `GET /` with the next unused token of the pool.
    Verify(Arc<Pool>),
}

/// Tokens handed out once each, to whichever connection asks next.
struct Pool {
    tokens: Vec<String>,
    next: AtomicUsize,
}

impl Pool {
    fn new(tokens: Vec<String>) -> Self {
        Self {
            tokens,
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.tokens.get(i).map(String::as_str)
    }

    fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.tokens.len())
    }
}

/// Runs `knobs.conns` closed-loop connections doing `work` for `warmup` + measurement;
/// returns what was measured and the tokens issued (for [`Work::Token`]).
async fn drive(
    addr: SocketAddr,
    work: Work,
    warmup: Duration,
    knobs: &Knobs,
) -> (Outcome, Vec<String>) {
    let start = Instant::now();
    let conn = Connection {
        addr,
        work,
        measure_from: start + warmup,
        measure_until: start + warmup + knobs.seconds,
        budget: Arc::new(AtomicU64::new(knobs.max_requests)),
        authorization: basic("bench", SECRET),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..knobs.conns {
        tasks.spawn(conn.clone().run());
    }
    let mut outcome = Outcome::default();
    let mut issued = Vec::new();
    let mut last_done = conn.measure_from;
    while let Some(joined) = tasks.join_next().await {
        let (part, tokens, done) = joined.expect("a load connection panicked");
        outcome.ok += part.ok;
        outcome.errors += part.errors;
        outcome.latencies_us.extend(part.latencies_us);
        issued.extend(tokens);
        last_done = last_done.max(done);
    }
    // Cut short (request cap, tokens spent): the window is what was actually used.
    outcome.window = last_done
        .min(conn.measure_until)
        .saturating_duration_since(conn.measure_from);
    outcome.latencies_us.sort_unstable();
    (outcome, issued)
}

/// One keep-alive HTTP/1.1 connection of the load generator.
#[derive(Clone)]
struct Connection {
    addr: SocketAddr,
    work: Work,
    measure_from: Instant,
    measure_until: Instant,
    /// Requests left for the whole row, shared by all connections.
    budget: Arc<AtomicU64>,
    authorization: String,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl Connection {
    /// Returns what it measured, the tokens it was issued, and when it stopped.
    async fn run(self) -> (Outcome, Vec<String>, Instant) {
        let mut outcome = Outcome::default();
        let mut issued = Vec::new();
        let mut sender: Option<Sender> = None;
        while Instant::now() < self.measure_until && take_one(&self.budget) {
            let request = match &self.work {
                Work::Token => self.token_request(),
                Work::Verify(pool) => match pool.take() {
                    Some(token) => self.verify_request(token),
                    None => break,
                },
            };
            if sender.is_none() {
                sender = connect(self.addr).await;
            }
            let Some(s) = sender.as_mut() else {
                outcome.errors += u64::from(Instant::now() >= self.measure_from);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let sent = Instant::now();
            let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange(s, request)).await;
            let done = Instant::now();
            let measured = sent >= self.measure_from && done <= self.measure_until;
            let answer = match result {
                Ok(Ok(body)) => self.check(&body),
                _ => None,
            };
            match answer {
                Some(token) => {
                    issued.extend(token);
                    if measured {
                        outcome.ok += 1;
                        let us = done.duration_since(sent).as_micros();
                        outcome
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                None => {
                    outcome.errors += u64::from(measured);
                    sender = None;
                }
            }
        }
        (outcome, issued, Instant::now())
    }

    fn token_request(&self) -> Request<Full<Bytes>> {
        Request::post("/oauth/token")
            .header("host", self.addr.to_string())
            .header("authorization", &self.authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials&scope=bench",
            )))
            .expect("valid request")
    }

    fn verify_request(&self, token: &str) -> Request<Full<Bytes>> {
        Request::get("/")
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .expect("valid request")
    }

    /// `Some` for a right answer (with the issued token, for a token request).
    fn check(&self, body: &[u8]) -> Option<Option<String>> {
        match self.work {
            Work::Token => {
                let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
                Some(Some(answer["access_token"].as_str()?.to_string()))
            }
            Work::Verify(_) => (body == OK_BODY.as_bytes()).then_some(None),
        }
    }
}

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// One request; its whole body when the answer is a 200.
async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Bytes, ()> {
    sender.ready().await.map_err(|_| ())?;
    let response = sender.send_request(req).await.map_err(|_| ())?;
    let ok = response.status() == StatusCode::OK;
    let body = response.into_body().collect().await.map_err(|_| ())?;
    if ok {
        Ok(body.to_bytes())
    } else {
        Err(())
    }
}

/// Takes one request from the row's budget; false once it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// An `Authorization: Basic` value.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

// === the revocation lag ===

/// Three instances on one store: `n` tokens issued at A and cached at B and C, revoked at A
/// one at a time.
async fn revocation_lags(dir: &Path, store: &str, upstream: SocketAddr, n: usize) -> Lags {
    let a = start(dir, "lag-a", store, upstream).await;
    let b = start(dir, "lag-b", store, upstream).await;
    let c = start(dir, "lag-c", store, upstream).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let token = issue(&http, a.public_addr).await;
        for other in [&b, &c] {
            let status = get(&http, other.public_addr, &token).await;
            assert_eq!(status, StatusCode::OK, "a token from A works elsewhere");
        }
        tokens.push(token);
    }
    let mut lags = Vec::with_capacity(2 * n);
    let mut lost = 0;
    for token in &tokens {
        // At a random moment: right after the last one arrived would be in step with a
        // poller's period (SQLite), and every lag would be nearly a whole period.
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..JITTER_MS))).await;
        let revoked = http
            .post(format!("http://{}/oauth/revoke", a.public_addr))
            .basic_auth("bench", Some(SECRET))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .expect("revoke answers");
        assert_eq!(revoked.status(), StatusCode::OK, "revoked");
        let answered = Instant::now();
        let (at_b, at_c) = tokio::join!(
            refused_after(&http, b.public_addr, token, answered),
            refused_after(&http, c.public_addr, token, answered),
        );
        for lag in [at_b, at_c] {
            lost += usize::from(lag.is_none());
            lags.push(lag.unwrap_or(LAG_LIMIT));
        }
    }
    for instance in [a, b, c] {
        instance.shutdown().await;
    }
    lags.sort_unstable();
    Lags { lags, lost }
}

/// A `client_credentials` token from `public`.
async fn issue(http: &reqwest::Client, public: SocketAddr) -> String {
    let answer: serde_json::Value = http
        .post(format!("http://{public}/oauth/token"))
        .basic_auth("bench", Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "bench")])
        .send()
        .await
        .expect("token endpoint reachable")
        .json()
        .await
        .expect("token answer is JSON");
    answer["access_token"]
        .as_str()
        .expect("the answer has an access_token")
        .to_string()
}

async fn get(http: &reqwest::Client, public: SocketAddr, token: &str) -> StatusCode {
    http.get(format!("http://{public}/"))
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

/// How long after `since` the instance at `public` first refuses `token`; `None` past
/// [`LAG_LIMIT`].
async fn refused_after(
    http: &reqwest::Client,
    public: SocketAddr,
    token: &str,
    since: Instant,
) -> Option<Duration> {
    while since.elapsed() < LAG_LIMIT {
        if get(http, public, token).await == StatusCode::UNAUTHORIZED {
            return Some(since.elapsed());
        }
        tokio::time::sleep(LAG_POLL).await;
    }
    None
}

// === reporting ===

impl Outcome {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn percentile_us(&self, p: f64) -> u32 {
        percentile(&self.latencies_us, p).copied().unwrap_or(0)
    }
}

fn percentile<T>(sorted: &[T], p: f64) -> Option<&T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1)
}

impl Throughput {
    /// Smoke test: every request answered right.
    fn assert_sound(&self, store: Store) {
        for (row, o) in [("token", &self.token), ("cold verify", &self.cold)] {
            assert!(
                o.errors == 0 && o.ok > 0,
                "{} {row}: {} ok, {} errors",
                store.name(),
                o.ok,
                o.errors
            );
        }
    }
}

impl Lags {
    /// Smoke test: every revocation arrived within a second.
    fn assert_sound(&self, store: Store) {
        let name = store.name();
        assert_eq!(self.lost, 0, "{name}: revocations lost");
        let max = self.lags.last().copied().unwrap_or_default();
        assert!(
            max < Duration::from_secs(1),
            "{name}: a revocation took {max:?}"
        );
    }

    fn ms(&self, p: f64) -> String {
        percentile(&self.lags, p)
            .map(|d| format!("{:.1}ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_default()
    }
}

fn print_round_header() {
    println!(
        "{:<7} {:>9} {:>7} {:>7} {:>6} | {:>9} {:>7} {:>7} {:>6} {:>7} {:>7}",
        "store",
        "tokens/s",
        "p50 µs",
        "p99 µs",
        "errors",
        "cold/s",
        "p50 µs",
        "p99 µs",
        "errors",
        "tokens",
        "window"
    );
}

/// One store's rows of one round; `window` is the part of the cold row's time it used.
fn print_round_row(store: Store, t: &Throughput) {
    println!(
        "{:<7} {:>9.0} {:>7} {:>7} {:>6} | {:>9.0} {:>7} {:>7} {:>6} {:>7} {:>6.2}s",
        store.name(),
        t.token.rps(),
        t.token.percentile_us(50.0),
        t.token.percentile_us(99.0),
        t.token.errors,
        t.cold.rps(),
        t.cold.percentile_us(50.0),
        t.cold.percentile_us(99.0),
        t.cold.errors,
        t.tokens,
        t.cold.window.as_secs_f64(),
    );
}

/// Mean rates over the rounds, SQLite's over Redis's per round (then averaged), and the lags.
fn print_summary(rounds: &[Vec<Throughput>], lags: &[Lags], knobs: &Knobs) {
    let n = rounds.len().max(1) as f64;
    let mean = |i: usize, rate: fn(&Throughput) -> f64| {
        rounds.iter().map(|r| rate(&r[i])).sum::<f64>() / n
    };
    let ratio = |rate: fn(&Throughput) -> f64| {
        rounds
            .iter()
            .map(|r| rate(&r[1]) / rate(&r[0]).max(1e-9))
            .sum::<f64>()
            / n
    };
    let token: fn(&Throughput) -> f64 = |t| t.token.rps();
    let cold: fn(&Throughput) -> f64 = |t| t.cold.rps();
    println!(
        "
summary: throughput mean over {} round(s); lag over {} revocations at A, seen at B and C (3 instances on one store)",
        rounds.len(),
        knobs.revocations
    );
    println!(
        "{:<7} {:>9} {:>7} | {:>9} {:>7} | {:>8} {:>8} {:>8} {:>5}",
        "store", "tokens/s", "ratio", "cold/s", "ratio", "lag p50", "lag p99", "lag max", "lost"
    );
    for (i, (store, lag)) in STORES.into_iter().zip(lags).enumerate() {
        let (token_ratio, cold_ratio) = match i {
            0 => (1.0, 1.0),
            _ => (ratio(token), ratio(cold)),
        };
        println!(
            "{:<7} {:>9.0} {:>7.2} | {:>9.0} {:>7.2} | {:>8} {:>8} {:>8} {:>5}",
            store.name(),
            mean(i, token),
            token_ratio,
            mean(i, cold),
            cold_ratio,
            lag.ms(50.0),
            lag.ms(99.0),
            lag.ms(100.0),
            lag.lost,
        );
    }
    println!("(ratio: SQLite's rate over Redis's in the same round, averaged over the rounds)");
}
