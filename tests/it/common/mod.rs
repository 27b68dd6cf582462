//! Spawners for real servers on loopback: an echoing upstream, an RFC 7662 introspection
//! server that counts its calls, and tollgate itself. Every server binds 127.0.0.1:0.
#![allow(dead_code)]

pub mod browser;
pub mod engines;
pub mod hyper_head;
pub mod oauth;
pub mod process;
pub mod raw;
pub mod redis;
pub mod scripted;
pub mod shared_store;
pub mod slapd;
pub mod tcp_proxy;
pub mod tls;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tollgate::{App, Config, Running};

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn full(body: impl Into<Bytes>) -> BoxBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Serves `handler` on a fresh loopback port until the returned handle is dropped.
pub async fn serve<F, Fut>(handler: F) -> ServerHandle
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<BoxBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    serve_on(listener, handler)
}

/// Serves `handler` on a listener the caller bound (e.g. a port a client already knows).
pub fn serve_on<F, Fut>(listener: TcpListener, handler: F) -> ServerHandle
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<BoxBody>> + Send + 'static,
{
    let addr = listener.local_addr().expect("bound");
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        // Connections live in this set, so stopping the server (aborting this task) also
        // closes connections a client keeps alive: a stopped server answers nothing.
        let mut connections = JoinSet::new();
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    ServerHandle { addr, task }
}

/// A running test server; stops (closes its listener) when dropped.
pub struct ServerHandle {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the listener and every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------- upstream

/// An upstream API that answers every request with a JSON echo of what it received.
///
/// Special paths: `/slow` waits until `release()` before answering (for 504s),
/// `/stream` sends one chunk, waits for `release()`, then sends the last one,
/// `/ws` accepts an `Upgrade` and echoes bytes on the upgraded connection.
pub struct Upstream {
    pub server: ServerHandle,
    /// Requests received so far (counted when their head arrives).
    pub hits: Arc<watch::Sender<usize>>,
    pub gate: Arc<Notify>,
    pub name: &'static str,
}

impl Upstream {
    pub async fn echo() -> Upstream {
        Self::named("upstream").await
    }

    pub async fn named(name: &'static str) -> Upstream {
        let hits = Arc::new(watch::Sender::new(0));
        let gate = Arc::new(Notify::new());
        let (h, g) = (hits.clone(), gate.clone());
        let server = serve(move |req| {
            h.send_modify(|n| *n += 1);
            echo_response(req, g.clone(), name)
        })
        .await;
        Upstream {
            server,
            hits,
            gate,
            name,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Lets one waiting (or the next) `/slow` or `/stream` request go on.
    pub fn release(&self) {
        self.gate.notify_one();
    }

    pub fn hits(&self) -> usize {
        *self.hits.borrow()
    }

    /// Waits (at most 10 s) until `n` requests have reached this upstream.
    pub async fn wait_for_hits(&self, n: usize) {
        let mut rx = self.hits.subscribe();
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("{} got {} of {n} requests in 10s", self.name, self.hits()))
            .expect("the upstream outlives this wait");
    }
}

async fn echo_response(
    mut req: Request<Incoming>,
    gate: Arc<Notify>,
    name: &'static str,
) -> Response<BoxBody> {
    match req.uri().path() {
        "/slow" => {
            gate.notified().await;
        }
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<
                Result<http_body::Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
            >(4);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(http_body::Frame::data(Bytes::from_static(
                        b"first-chunk;",
                    ))))
                    .await;
                gate.notified().await;
                let _ = tx
                    .send(Ok(http_body::Frame::data(Bytes::from_static(
                        b"last-chunk",
                    ))))
                    .await;
            });
            let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
            return Response::new(BodyExt::boxed(body));
        }
        "/ws" => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            return Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(Bytes::new()))
                .expect("valid response");
        }
        _ => {}
    }
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let echo = json!({
        "upstream": name,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-upstream-hop")
        .header("x-upstream-hop", "secret")
        .header("keep-alive", "timeout=5")
        .body(full(echo.to_string()))
        .expect("valid response")
}

/// The values of header `name` (lower case) as the echo upstream received them.
pub fn echoed(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| v.as_str().expect("header values are strings").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// ---------------------------------------------------------------- introspection

/// Credentials the gateway presents to [`Introspector`].
pub const INTROSPECT_ID: &str = "gateway";
pub const INTROSPECT_SECRET: &str = "gateway-secret";

/// An RFC 7662 endpoint at `/introspect` with a fixed token table and a call counter.
pub struct Introspector {
    pub server: ServerHandle,
    calls: Arc<AtomicUsize>,
    tokens: Arc<Mutex<HashMap<String, Value>>>,
    fault: Arc<Mutex<Fault>>,
}

/// How a broken [`Introspector`] answers (after reading the whole request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers from the token table, as a healthy endpoint does.
    None,
    /// `500` with a text body.
    Status500,
    /// `200` whose body is not JSON.
    NotJson,
    /// `200` with JSON of the wrong shape (`active` a string).
    WrongShape,
    /// `200` with a JSON body far larger than any real answer.
    Huge,
    /// Answers correctly, after this long.
    Slow(Duration),
    /// Reads the request and never answers.
    Hang,
}

impl Introspector {
    /// `delay` holds every answer back, so concurrent requests overlap in flight.
    pub async fn spawn(delay: Duration) -> Introspector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        Self::spawn_on(listener, delay)
    }

    /// Like `spawn`, on `addr` (a port the gateway was configured with before it listened).
    pub async fn spawn_at(addr: SocketAddr) -> Introspector {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr} again: {e}"));
        Self::spawn_on(listener, Duration::ZERO)
    }

    fn spawn_on(listener: TcpListener, delay: Duration) -> Introspector {
        let calls = Arc::new(AtomicUsize::new(0));
        let tokens: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let fault = Arc::new(Mutex::new(Fault::None));
        let (c, t, f) = (calls.clone(), tokens.clone(), fault.clone());
        let server = serve_on(listener, move |req| {
            let (c, t, f) = (c.clone(), t.clone(), f.clone());
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                introspect(req, &t, &f, delay).await
            }
        });
        Introspector {
            server,
            calls,
            tokens,
            fault,
        }
    }

    /// Adds an active token with these scopes for user `sub`, expiring in an hour.
    pub fn active(&self, token: &str, sub: &str, scope: &str) -> &Self {
        self.insert(token, json!({"active": true, "sub": sub, "username": sub, "client_id": "mail-app", "scope": scope, "exp": now() + 3600, "token_type": "Bearer"}))
    }

    pub fn insert(&self, token: &str, answer: Value) -> &Self {
        self.tokens
            .lock()
            .expect("not poisoned")
            .insert(token.to_string(), answer);
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// From now on answer 500 (or, with `false`, answer normally again).
    pub fn fail(&self, failing: bool) {
        self.set_fault(if failing {
            Fault::Status500
        } else {
            Fault::None
        });
    }

    /// From now on answer as `fault` says.
    pub fn set_fault(&self, fault: Fault) {
        *self.fault.lock().expect("not poisoned") = fault;
    }

    pub fn url(&self) -> String {
        format!("{}/introspect", self.server.url())
    }
}

async fn introspect(
    req: Request<Incoming>,
    tokens: &Mutex<HashMap<String, Value>>,
    fault: &Mutex<Fault>,
    delay: Duration,
) -> Response<BoxBody> {
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{INTROSPECT_ID}:{INTROSPECT_SECRET}"))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == expected.as_str());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = *fault.lock().expect("not poisoned");
    let broken = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(full(body))
            .expect("valid")
    };
    match fault {
        Fault::None => {}
        Fault::Status500 => return broken(500, "boom".into()),
        Fault::NotJson => return broken(200, "<html>upstream error</html>".into()),
        Fault::WrongShape => return broken(200, r#"{"active":"yes","exp":"later"}"#.into()),
        Fault::Huge => {
            let padding = "x".repeat(1024 * 1024);
            return broken(200, json!({"active": true, "padding": padding}).to_string());
        }
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Hang => std::future::pending::<()>().await,
    }
    if !authorized {
        return Response::builder()
            .status(401)
            .body(full("{\"error\":\"invalid_client\"}"))
            .expect("valid");
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = tokens
        .lock()
        .expect("not poisoned")
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    Response::builder()
        .header("content-type", "application/json")
        .body(full(answer.to_string()))
        .expect("valid")
}

// ---------------------------------------------------------------- the gateway

/// tollgate running in this process with a config written for the test.
pub struct TestGateway {
    pub running: Option<Running>,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts tollgate with `body` appended to a config whose listeners are on port 0
    /// (unless `body` has its own `[server]`, e.g. from [`server_section`]). Without a `[log]`
    /// of its own the access log goes to `access.log` in the test's directory (not to the
    /// test's stdout); [`TestGateway::access_log`] reads it.
    pub async fn spawn(body: &str) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(dir, body).await
    }

    /// Like `spawn`, in a directory the caller prepared (certificates, users file).
    pub async fn spawn_in(dir: tempfile::TempDir, body: &str) -> TestGateway {
        Self::spawn_in_with(dir, body, |_| {}).await
    }

    /// Like `spawn_in`, with `tweak` applied to the loaded configuration before the start
    /// (for settings no config file can make, such as the TLS listener's engine).
    pub async fn spawn_in_with(
        dir: tempfile::TempDir,
        body: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> TestGateway {
        let mut text = if body.contains("[server]") {
            body.to_string()
        } else {
            format!("{}{body}", server_section(""))
        };
        if !text.contains("[log]") {
            text.push_str("\n[log]\naccess = \"access.log\"\n");
        }
        let path: PathBuf = dir.path().join("gateway.toml");
        std::fs::write(&path, &text).expect("write config");
        let mut config = Config::load(&path)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{text}"));
        tweak(&mut config);
        let running = App::start(config).await.expect("tollgate starts");
        TestGateway {
            public: running.public_addr,
            internal: running.internal_addr,
            tls: running.tls_addr,
            running: Some(running),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    /// The access log's lines written so far (the file `access.log` in the test's
    /// directory).
    pub async fn access_log(&self) -> Vec<String> {
        if let Some(running) = &self.running {
            running
                .access_log
                .flush()
                .await
                .expect("access log flushed");
        }
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (at most 5 s) until the access log has at least `n` lines, and returns them.
    /// A line is written just after the client has the response, so a test that has its
    /// answer waits a moment for the line.
    pub async fn access_log_lines(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.access_log().await;
            if lines.len() >= n {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} access-log lines after 5 s: {lines:#?}",
                lines.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{}", self.internal, path)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.internal_url("/metrics"))
            .await
            .expect("metrics reachable")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A `[server]` section with both listeners on port 0 and `extra` keys (limits).
pub fn server_section(extra: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n{extra}\n\n")
}

/// A `[verify]` section pointing at `introspector`.
pub fn remote_verify(introspector: &Introspector, extra: &str) -> String {
    format!(
        "[verify]\nsource = \"remote\"\nurl = \"{}\"\nclient_id = \"{INTROSPECT_ID}\"\nclient_secret = \"{INTROSPECT_SECRET}\"\n{extra}\n",
        introspector.url()
    )
}

/// A `[[routes]]` entry.
pub fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n")
}

/// An `http://127.0.0.1:PORT` URL on which nothing listens (connections are refused).
///
/// The port stays bound, without listening, for the rest of the test process: a port
/// bound and let go at once could be taken by another test's listener running alongside,
/// and the "refused" target would then answer.
pub fn refused_url() -> String {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind loopback");
    let port = socket.local_addr().expect("bound").port();
    // Never closed: a handful per test process.
    std::mem::forget(socket);
    format!("http://127.0.0.1:{port}")
}

/// A plain HTTP/1.1 client (no cookie jar, no redirects).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// Reads a counter or gauge sample like `tollgate_requests_total{route="mail",status="200"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

/// Reads the sample of `name` whose labels are exactly `labels`, in any order.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let mut got: Vec<String> = match series.strip_prefix('{') {
            Some(inner) => inner
                .strip_suffix('}')?
                .split(',')
                .map(str::to_string)
                .collect(),
            None if series.is_empty() => Vec::new(),
            None => return None,
        };
        got.sort();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

/// Like [`sample`], with an absent series read as zero (a counter never bumped).
pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    sample(text, name, labels).unwrap_or(0.0) as u64
}

/// The hidden CSRF field's value in a login or consent page, as a browser would submit it.
pub fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .expect("closing quote")
        .to_string()
}

/// Posts a token request with Basic client credentials; returns the `access_token`.
pub async fn access_token(
    gw: &TestGateway,
    (id, secret): (&str, &str),
    form: &[(&str, &str)],
) -> String {
    let answer: Value = client()
        .post(gw.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("json");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {answer}"))
        .to_string()
}

/// A `WWW-Authenticate` value without its RFC 9728 `resource_metadata` parameter, which
/// names the route's metadata URL (tested on its own in `audiences`).
pub fn without_resource_metadata(challenge: &str) -> String {
    match challenge.find(", resource_metadata=\"") {
        Some(at) => {
            let rest = &challenge[at + ", resource_metadata=\"".len()..];
            let end = rest.find('"').map_or(rest.len(), |i| i + 1);
            format!("{}{}", &challenge[..at], &rest[end..])
        }
        None => challenge.to_string(),
    }
}
