//! One gateway, both engines: the fast lane (a body-less `GET` without `Connection: close`
//! on the plain listener) and hyper (the same `GET` over the TLS listener, over HTTP/2, or a
//! `POST` with a body on the plain listener). A rule about what reaches an upstream or what
//! the client gets back is run through a list of [`Engine`]s and must give the same answer
//! on each: [`GET_ENGINES`] for rules about a request head, [`RAW_ENGINES`] for rules about
//! how a response ends, [`ALL_ENGINES`] for the parity table (`tests/it/parity.rs`).
//!
//! In the application HTTP/1.1 over TLS starts on the fast lane too; this gateway's TLS
//! listener is set to hyper alone (`tls::spawn_gateway_with`), so that hyper's HTTP/1.1
//! engine has a listener of its own here, and a second gateway with the same routes serves
//! [`Engine::FastLaneTls`] the way the application does (`tls_lane.rs` has more).

use super::raw::{self, Outcome, RawResponse};
use super::{tls, TestGateway};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Which way a request reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A body-less HTTP/1.1 GET on the plain listener: the fast lane.
    FastLane,
    /// The same GET over TLS (HTTP/1.1 by ALPN) as the application serves it: the fast
    /// lane, on a second gateway with the same routes.
    FastLaneTls,
    /// The same GET over the TLS listener (HTTP/1.1): hyper.
    HyperTls,
    /// The same GET over the TLS listener in HTTP/2 (ALPN): hyper. reqwest only.
    Http2,
    /// A POST with a small body (`ping`) on the plain listener: hyper, after the hand-over.
    HyperPost,
}

/// The same GET head on each listener.
pub const GET_ENGINES: [Engine; 2] = [Engine::FastLane, Engine::HyperTls];
/// Every way a raw HTTP/1.1 exchange takes.
pub const RAW_ENGINES: [Engine; 4] = [
    Engine::FastLane,
    Engine::FastLaneTls,
    Engine::HyperTls,
    Engine::HyperPost,
];
/// Every way there is.
pub const ALL_ENGINES: [Engine; 4] = [
    Engine::FastLane,
    Engine::HyperTls,
    Engine::Http2,
    Engine::HyperPost,
];

/// The body a [`Engine::HyperPost`] request carries.
pub const POST_BODY: &str = "ping";

/// A byte stream to either listener.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// tollgate with its plain and TLS listeners, the certificate its TLS clients trust, and
/// a client for each engine.
pub struct Engines {
    pub gw: TestGateway,
    pub cert_pem: String,
    plain: reqwest::Client,
    /// A client of its own for bodies: a request with a body moves its connection to hyper
    /// for good, and `plain`'s connections must stay on the fast lane.
    plain_bodies: reqwest::Client,
    tls: reqwest::Client,
    http2: reqwest::Client,
    /// The second gateway, whose TLS listener starts HTTP/1.1 on the fast lane.
    pub tls_lane: TestGateway,
    tls_lane_cert: String,
    tls_lane_client: reqwest::Client,
}

impl Engines {
    /// tollgate with `body` (routes, verify) after a `[server]` with both listeners.
    pub async fn spawn(body: &str) -> Engines {
        let (gw, cert_pem) = tls::spawn_gateway_with(body, false).await;
        let tls = tls::client(&cert_pem, &gw, true);
        let http2 = tls::client(&cert_pem, &gw, false);
        let (tls_lane, tls_lane_cert) = tls::spawn_gateway_with(body, true).await;
        let tls_lane_client = tls::client(&tls_lane_cert, &tls_lane, true);
        Engines {
            gw,
            cert_pem,
            plain: super::client(),
            plain_bodies: super::client(),
            tls,
            http2,
            tls_lane,
            tls_lane_cert,
            tls_lane_client,
        }
    }

    /// The request for `path` the way `engine` sends it (reqwest, kept alive).
    pub fn request(&self, engine: Engine, path: &str) -> reqwest::RequestBuilder {
        match engine {
            Engine::FastLane => self.plain.get(self.gw.url(path)),
            Engine::HyperTls => self.tls.get(tls::url(&self.gw, path)),
            Engine::FastLaneTls => self.tls_lane_client.get(tls::url(&self.tls_lane, path)),
            Engine::Http2 => self
                .http2
                .get(tls::url(&self.gw, path))
                .version(reqwest::Version::HTTP_2),
            Engine::HyperPost => self.post(engine, path),
        }
    }

    /// A POST of [`POST_BODY`] to `path` on the listener `engine` is reached on, in its
    /// HTTP version (a body takes hyper's path on every listener).
    pub fn post(&self, engine: Engine, path: &str) -> reqwest::RequestBuilder {
        let request = match engine {
            Engine::FastLane | Engine::HyperPost => self.plain_bodies.post(self.gw.url(path)),
            Engine::HyperTls => self.tls.post(tls::url(&self.gw, path)),
            Engine::FastLaneTls => self.tls_lane_client.post(tls::url(&self.tls_lane, path)),
            Engine::Http2 => self
                .http2
                .post(tls::url(&self.gw, path))
                .version(reqwest::Version::HTTP_2),
        };
        request.body(POST_BODY)
    }

    /// The request for `path` with `Authorization: Bearer token` through `engine`.
    pub async fn bearer(&self, engine: Engine, path: &str, token: &str) -> reqwest::Response {
        self.request(engine, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{engine:?} {path}: {e}"))
    }

    /// A fresh connection to the listener a raw `engine` exchange goes to.
    pub async fn connect(&self, engine: Engine) -> Box<dyn Io> {
        match engine {
            Engine::FastLane | Engine::HyperPost => Box::new(
                tokio::net::TcpStream::connect(self.gw.public)
                    .await
                    .expect("connect"),
            ),
            Engine::HyperTls => Box::new(tls::connect_raw(&self.cert_pem, &self.gw).await),
            Engine::FastLaneTls => {
                Box::new(tls::connect_raw(&self.tls_lane_cert, &self.tls_lane).await)
            }
            Engine::Http2 => panic!("raw exchanges speak HTTP/1.1: use `request` for HTTP/2"),
        }
    }

    /// Sends `request` exactly as written on a fresh connection and reads one response.
    pub async fn exchange(&self, engine: Engine, request: &str) -> RawResponse {
        let mut stream = self.connect(engine).await;
        stream.write_all(request.as_bytes()).await.expect("write");
        raw::read_response(&mut stream).await
    }

    /// The request for `target` with `Host: gw.test` and `extra_headers` (each ending in
    /// CRLF), written as `engine` takes it, on a fresh connection.
    pub async fn get(&self, engine: Engine, target: &str, extra_headers: &str) -> RawResponse {
        self.exchange(engine, &raw_request(engine, target, extra_headers))
            .await
    }

    /// The client for the TLS listener that speaks HTTP/2 (by ALPN).
    pub fn http2(&self) -> &reqwest::Client {
        &self.http2
    }

    /// `https://localhost:PORT{path}` on the TLS listener.
    pub fn tls_url(&self, path: &str) -> String {
        tls::url(&self.gw, path)
    }
}

/// The raw HTTP/1.1 request for `target` as `engine` sends it.
pub fn raw_request(engine: Engine, target: &str, extra_headers: &str) -> String {
    match engine {
        Engine::FastLane | Engine::FastLaneTls | Engine::HyperTls | Engine::Http2 => {
            format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra_headers}\r\n")
        }
        Engine::HyperPost => format!(
            "POST {target} HTTP/1.1\r\nHost: gw.test\r\n{extra_headers}Content-Length: {}\r\n\r\n{POST_BODY}",
            POST_BODY.len()
        ),
    }
}

/// Sends the request for `path` the way `engine` takes it on `conn` and reads how it ended.
pub async fn exchange_outcome(conn: &mut Box<dyn Io>, engine: Engine, path: &str) -> Outcome {
    let request = raw_request(engine, path, "");
    conn.write_all(request.as_bytes()).await.expect("write");
    raw::read_outcome(conn.as_mut()).await
}

/// What a client must see.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// A whole JSON error with this status and `error` code.
    Error(u16, &'static str),
    /// The connection ends without a whole message.
    Aborted,
    /// A whole 200 with this body.
    Ok(&'static str),
}

pub const BAD_GATEWAY: Expect = Expect::Error(502, "bad_gateway");

/// Checks an outcome against what was expected; `what` names the case.
pub fn assert_outcome(outcome: &Outcome, expect: Expect, what: &str) {
    if let Err(mismatch) = check_outcome(outcome, expect, what) {
        panic!("{mismatch}");
    }
}

/// Like [`assert_outcome`], for tables that list every mismatch before failing.
pub fn check_outcome(outcome: &Outcome, expect: Expect, what: &str) -> Result<(), String> {
    let matches = match (expect, outcome) {
        (Expect::Error(status, code), Outcome::Answered(got, body)) if *got == status => {
            serde_json::from_str::<Value>(body).is_ok_and(|body| body["error"] == code)
        }
        (Expect::Aborted, Outcome::Aborted) => true,
        (Expect::Ok(expected), Outcome::Answered(200, body)) => body == expected,
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(format!("{what}: expected {expect:?}, got {outcome:?}"))
    }
}
