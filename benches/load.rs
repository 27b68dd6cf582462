//! Load bench: what tollgate costs in front of a fast API, all in one process on loopback.
//!
//! Starts an in-memory upstream (`200 {"ok":true}`) and tollgate (memory store, one
//! `client_credentials` client, a protected route `/` and an open route `/open`), takes a
//! token from tollgate's own `/oauth/token`, then drives the same closed-loop load —
//! `LOAD_CONNS` keep-alive HTTP/1.1 connections, each sending its next request when the
//! last answer is read — at each row in turn: the upstream directly, the open route, the
//! protected route with a warm token cache. Prints requests/s, p50 and p99 per row and the
//! ratios to the direct row. See `benches/README.md` for the method and its caveats.
//!
//! `cargo bench --bench load`; knobs: `LOAD_SECONDS` (5), `LOAD_WARMUP` (1),
//! `LOAD_CONNS` (32), `LOAD_ROUNDS` (2), `LOAD_MAX_REQUESTS` (5000000 per row),
//! `LOAD_STORE` (`memory`, or `sqlite` for a SQLite file in a temporary directory),
//! `LOAD_ROWS` (comma-separated row names to run; all when unset).

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tollgate::{App, Config};

/// The client secret of the bench client; its `secret_hash` is computed from it.
const SECRET: &str = "load-bench-secret-not-for-production";
/// No single request may take longer than this; a slower one is counted as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

struct Knobs {
    /// Run as a test (no `--bench`): short rows that must all answer right.
    smoke: bool,
    seconds: Duration,
    warmup: Duration,
    conns: usize,
    rounds: usize,
    max_requests: u64,
    /// `true`: the gateway's store is a SQLite file in the run's temporary directory.
    sqlite: bool,
    /// Rows to run by name; empty runs them all.
    rows: Vec<String>,
}

/// One load target: where to connect and what to send.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    authorization: Option<String>,
    /// A form body to POST; `None` sends a GET.
    form: Option<String>,
    /// What a right answer's body must contain.
    expect: &'static str,
}

/// What one row measured.
struct Outcome {
    ok: u64,
    errors: u64,
    window: Duration,
    /// Latencies of the successful requests, in microseconds, sorted.
    latencies_us: Vec<u32>,
}

fn main() {
    let knobs = Knobs::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(knobs));
}

async fn run(knobs: Knobs) {
    let upstream = spawn_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    let store = if knobs.sqlite {
        format!("sqlite:{}", dir.path().join("tokens.db").display())
    } else {
        "memory".to_string()
    };
    std::fs::write(&path, gateway_config(upstream, &store)).expect("write config");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("bench config invalid:\n{e}"));
    let running = App::start(config).await.expect("tollgate starts");
    let token = fetch_token(running.public_addr).await;
    let bearer = format!("Bearer {token}");
    sanity_check(upstream, running.public_addr, &bearer).await;

    let targets = [
        Target {
            name: "direct",
            addr: upstream,
            path: "/",
            authorization: None,
            form: None,
            expect: OK_BODY,
        },
        Target {
            name: "gateway-open",
            addr: running.public_addr,
            path: "/open",
            authorization: None,
            form: None,
            expect: OK_BODY,
        },
        Target {
            name: "gateway-bearer",
            addr: running.public_addr,
            path: "/",
            authorization: Some(bearer),
            form: None,
            expect: OK_BODY,
        },
        // The authorization server: a client_credentials token per request (a new record
        // in the store each time), and RFC 7662 introspection of a live token.
        Target {
            name: "oauth-token",
            addr: running.public_addr,
            path: "/oauth/token",
            authorization: Some(basic("bench", SECRET)),
            form: Some("grant_type=client_credentials&scope=bench".to_string()),
            expect: "\"access_token\"",
        },
        Target {
            name: "verify",
            addr: running.internal_addr,
            path: "/verify",
            authorization: Some(basic("resource-server", SECRET)),
            form: Some(format!("token={token}")),
            expect: "\"active\":true",
        },
    ];
    let targets: Vec<Target> = targets
        .into_iter()
        .filter(|t| knobs.rows.is_empty() || knobs.rows.iter().any(|r| r == t.name))
        .collect();
    assert!(!targets.is_empty(), "LOAD_ROWS names no row");
    println!(
        "load: store {store}, {} connections, {:?} warm-up + {:?} per row, {} round(s), cap {} requests per row",
        knobs.conns, knobs.warmup, knobs.seconds, knobs.rounds, knobs.max_requests
    );
    println!("(client, gateway and upstream share this machine's CPUs: compare rows, not runs)");
    let mut totals = vec![0f64; targets.len()];
    for round in 1..=knobs.rounds {
        println!("\nround {round}");
        print_header();
        let mut direct = None;
        for (i, target) in targets.iter().enumerate() {
            let outcome = drive(target, &knobs).await;
            if knobs.smoke {
                assert!(
                    outcome.errors == 0 && outcome.ok > 0,
                    "{}: {} ok, {} errors",
                    target.name,
                    outcome.ok,
                    outcome.errors
                );
            }
            totals[i] += outcome.rps();
            let base = *direct.get_or_insert((outcome.rps(), outcome.percentile_us(50.0)));
            print_row(target.name, &outcome, base);
        }
    }
    print_summary(&targets, &totals, knobs.rounds);
    print_cache_counters(running.internal_addr).await;
    running.shutdown().await;
}

// === impl Knobs ===

impl Knobs {
    fn from_env() -> Self {
        // `cargo test --all-targets` runs this binary without `--bench`: then it is a smoke
        // test (every row answers right under a little load), not a measurement.
        if !std::env::args().any(|a| a == "--bench") {
            return Self {
                smoke: true,
                seconds: Duration::from_millis(300),
                warmup: Duration::from_millis(100),
                conns: 4,
                rounds: 1,
                max_requests: 20_000,
                sqlite: false,
                rows: Vec::new(),
            };
        }
        Self {
            smoke: false,
            seconds: Duration::from_secs_f64(env_num("LOAD_SECONDS", 5.0)),
            warmup: Duration::from_secs_f64(env_num("LOAD_WARMUP", 1.0)),
            conns: env_num("LOAD_CONNS", 32.0).max(1.0) as usize,
            rounds: env_num("LOAD_ROUNDS", 2.0).max(1.0) as usize,
            max_requests: env_num("LOAD_MAX_REQUESTS", 5_000_000.0).max(1.0) as u64,
            sqlite: match std::env::var("LOAD_STORE").as_deref() {
                Err(_) | Ok("memory") => false,
                Ok("sqlite") => true,
                Ok(other) => panic!("LOAD_STORE={other:?}: memory or sqlite"),
            },
            rows: std::env::var("LOAD_ROWS")
                .map(|v| {
                    v.split(',')
                        .map(|r| r.trim().to_string())
                        .filter(|r| !r.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
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
                        .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)))
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

fn gateway_config(upstream: SocketAddr, store: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"

[log]
access = "off"

[oauth]
store = "{store}"

[oauth.scopes]
bench = "Benchmark"

[[clients]]
id = "bench"
secret_hash = "{hash}"
grant_types = ["client_credentials"]
scopes = ["bench"]

[[clients]]
id = "resource-server"
secret_hash = "{hash}"
introspect = true

[verify]
source = "local"
cache_ttl = "5m"

[[routes]]
name = "bench"
path_prefix = "/"
upstream = "http://{upstream}"
auth = "bearer"
scopes = ["bench"]

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "http://{upstream}"
auth = "none"
"#,
        hash = tollgate::secrets::fast_secret_hash(SECRET),
    )
}

/// The body every upstream answer carries.
const OK_BODY: &str = r#"{"ok":true}"#;

/// An `Authorization: Basic` value.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let pair = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A `client_credentials` token from the gateway's own token endpoint.
async fn fetch_token(public: SocketAddr) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{public}/oauth/token"))
        .basic_auth("bench", Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "bench")])
        .send()
        .await
        .expect("token endpoint reachable")
        .error_for_status()
        .expect("token endpoint answers 200")
        .json()
        .await
        .expect("token answer is JSON");
    answer["access_token"]
        .as_str()
        .expect("the answer has an access_token")
        .to_string()
}

/// Every row must answer 200 `{"ok":true}`, and the guard must refuse a missing token;
/// the first bearer request also warms the verification cache.
async fn sanity_check(upstream: SocketAddr, public: SocketAddr, bearer: &str) {
    let client = reqwest::Client::new();
    let get = |url: String, auth: Option<&str>| {
        let mut req = client.get(url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let response = req.send().await.expect("reachable");
            let status = response.status();
            (status, response.text().await.expect("a body"))
        }
    };
    for (url, auth) in [
        (format!("http://{upstream}/"), None),
        (format!("http://{public}/open"), None),
        (format!("http://{public}/"), Some(bearer)),
    ] {
        let (status, body) = get(url.clone(), auth).await;
        assert!(
            status == StatusCode::OK && body == r#"{"ok":true}"#,
            "{url}: {status} {body}"
        );
    }
    let (status, _) = get(format!("http://{public}/"), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the guard lets a request without a token through"
    );
}

// === the load ===

/// Runs `knobs.conns` closed-loop connections against `target` for warm-up + measurement.
async fn drive(target: &Target, knobs: &Knobs) -> Outcome {
    let start = Instant::now();
    let measure_from = start + knobs.warmup;
    let measure_until = measure_from + knobs.seconds;
    let budget = Arc::new(AtomicU64::new(knobs.max_requests));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..knobs.conns {
        let conn = Connection {
            addr: target.addr,
            path: target.path,
            authorization: target.authorization.clone(),
            form: target.form.clone().map(Bytes::from),
            expect: target.expect,
            measure_from,
            measure_until,
            budget: budget.clone(),
        };
        tasks.spawn(conn.run());
    }
    let mut outcome = Outcome {
        ok: 0,
        errors: 0,
        window: knobs.seconds,
        latencies_us: Vec::new(),
    };
    while let Some(joined) = tasks.join_next().await {
        let part = joined.expect("a load connection panicked");
        outcome.ok += part.ok;
        outcome.errors += part.errors;
        outcome.latencies_us.extend(part.latencies_us);
    }
    // Cut short by the request cap: the window is what was actually used.
    if budget.load(Ordering::Relaxed) == 0 {
        outcome.window = Instant::now().saturating_duration_since(measure_from);
    }
    outcome.latencies_us.sort_unstable();
    outcome
}

/// One keep-alive HTTP/1.1 connection of the load generator.
struct Connection {
    addr: SocketAddr,
    path: &'static str,
    authorization: Option<String>,
    form: Option<Bytes>,
    expect: &'static str,
    measure_from: Instant,
    measure_until: Instant,
    /// Requests left for the whole row, shared by all connections.
    budget: Arc<AtomicU64>,
}

impl Connection {
    async fn run(self) -> Outcome {
        let mut outcome = Outcome {
            ok: 0,
            errors: 0,
            window: Duration::ZERO,
            latencies_us: Vec::with_capacity(64 * 1024),
        };
        let mut sender = None;
        while Instant::now() < self.measure_until && take_one(&self.budget) {
            if sender.is_none() {
                sender = self.connect().await;
            }
            let Some(s) = sender.as_mut() else {
                outcome.errors += u64::from(Instant::now() >= self.measure_from);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let sent = Instant::now();
            let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(s)).await;
            let done = Instant::now();
            let measured = sent >= self.measure_from && done <= self.measure_until;
            match result {
                Ok(Ok(())) if measured => {
                    outcome.ok += 1;
                    let us = done.duration_since(sent).as_micros();
                    outcome
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                Ok(Ok(())) => {}
                Ok(Err(())) | Err(_) => {
                    outcome.errors += u64::from(measured);
                    sender = None;
                }
            }
        }
        outcome
    }

    async fn connect(&self) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(sender)
    }

    /// One request and its whole body; `Err` for anything but a 200 with the expected body.
    async fn exchange(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    ) -> Result<(), ()> {
        sender.ready().await.map_err(|_| ())?;
        let mut req = Request::builder()
            .uri(self.path)
            .header("host", self.addr.to_string());
        if let Some(auth) = &self.authorization {
            req = req.header("authorization", auth);
        }
        let body = match &self.form {
            Some(form) => {
                req = req
                    .method("POST")
                    .header("content-type", "application/x-www-form-urlencoded");
                Full::new(form.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|_| ())?;
        let response = sender.send_request(req).await.map_err(|_| ())?;
        let ok = response.status() == StatusCode::OK;
        let body = response.into_body().collect().await.map_err(|_| ())?;
        let body = body.to_bytes();
        let found = std::str::from_utf8(&body).is_ok_and(|b| b.contains(self.expect));
        if ok && found {
            Ok(())
        } else {
            Err(())
        }
    }
}

/// Takes one request from the row's budget; false once it is spent.
fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

// === reporting ===

impl Outcome {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn percentile_us(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        self.latencies_us[rank.clamp(1, self.latencies_us.len()) - 1]
    }
}

fn print_header() {
    println!(
        "{:<16} {:>10} {:>8} {:>8} {:>7} {:>12} {:>12}",
        "row", "req/s", "p50 µs", "p99 µs", "errors", "req/s ratio", "p50 ratio"
    );
}

/// One row; the ratios are this row's over the direct row's of the same round.
fn print_row(name: &str, outcome: &Outcome, (direct_rps, direct_p50): (f64, u32)) {
    let p50 = outcome.percentile_us(50.0);
    println!(
        "{:<16} {:>10.0} {:>8} {:>8} {:>7} {:>12.2} {:>12.2}",
        name,
        outcome.rps(),
        p50,
        outcome.percentile_us(99.0),
        outcome.errors,
        outcome.rps() / direct_rps.max(1e-9),
        f64::from(p50) / f64::from(direct_p50.max(1)),
    );
}

fn print_summary(targets: &[Target], totals: &[f64], rounds: usize) {
    println!("\nmean over {rounds} round(s)");
    println!("{:<16} {:>10} {:>12}", "row", "req/s", "req/s ratio");
    for (target, total) in targets.iter().zip(totals) {
        println!(
            "{:<16} {:>10.0} {:>12.2}",
            target.name,
            total / rounds as f64,
            total / totals[0].max(1e-9)
        );
    }
}

/// The gateway's own cache counters: a warm cache shows one miss and many hits.
async fn print_cache_counters(internal: SocketAddr) {
    let Ok(response) = reqwest::get(format!("http://{internal}/metrics")).await else {
        println!("(metrics unreachable)");
        return;
    };
    let text = response.text().await.unwrap_or_default();
    let counters: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tollgate_verify_cache_total{"))
        .collect();
    println!("\n{}", counters.join("\n"));
}
