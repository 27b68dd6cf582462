//! One gateway, both HTTP/1.1 engines: the same raw request sent to the plain listener,
//! where a body-less `GET`/`HEAD` without `Connection: close` takes the fast lane, and to the
//! TLS listener, where hyper serves everything. A rule about what reaches an upstream or what
//! the client gets back is run through [`ENGINES`] and must give the same answer on each.
//!
//! In the application HTTP/1.1 over TLS starts on the fast lane too; this gateway's TLS
//! listener is set to hyper alone (`tls::spawn_gateway_with`), so that hyper's HTTP/1.1
//! engine has a listener of its own here (`tls_lane.rs` covers the fast lane over TLS).

use super::raw::{self, RawResponse};
use super::{tls, TestGateway};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Which engine a request is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The plain listener: the fast lane for what it takes, hyper (after the hand-over)
    /// for the rest.
    FastLane,
    /// The TLS listener, set to hyper alone.
    Hyper,
}

pub const ENGINES: [Engine; 2] = [Engine::FastLane, Engine::Hyper];

/// A byte stream to either listener.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// tollgate with its plain and TLS listeners, the certificate its TLS clients trust, and
/// an HTTP/1.1 client for each engine.
pub struct Engines {
    pub gw: TestGateway,
    pub cert_pem: String,
    plain: reqwest::Client,
    tls: reqwest::Client,
}

impl Engines {
    /// tollgate with `body` (routes, verify) after a `[server]` with both listeners.
    pub async fn spawn(body: &str) -> Engines {
        let (gw, cert_pem) = tls::spawn_gateway_with(body, false).await;
        let tls = tls::client(&cert_pem, &gw, true);
        Engines {
            gw,
            cert_pem,
            plain: super::client(),
            tls,
        }
    }

    /// `GET path` with `Authorization: Bearer token` through `engine` (reqwest, kept alive).
    pub async fn bearer(&self, engine: Engine, path: &str, token: &str) -> reqwest::Response {
        let request = match engine {
            Engine::FastLane => self.plain.get(self.gw.url(path)),
            Engine::Hyper => self.tls.get(tls::url(&self.gw, path)),
        };
        request
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{engine:?} GET {path}: {e}"))
    }

    /// A fresh connection to the engine's listener.
    pub async fn connect(&self, engine: Engine) -> Box<dyn Io> {
        match engine {
            Engine::FastLane => Box::new(
                tokio::net::TcpStream::connect(self.gw.public)
                    .await
                    .expect("connect"),
            ),
            Engine::Hyper => Box::new(tls::connect_raw(&self.cert_pem, &self.gw).await),
        }
    }

    /// Sends `request` exactly as written on a fresh connection and reads one response.
    pub async fn exchange(&self, engine: Engine, request: &str) -> RawResponse {
        let mut stream = self.connect(engine).await;
        stream.write_all(request.as_bytes()).await.expect("write");
        raw::read_response(&mut stream).await
    }

    /// `GET {target}` with `Host: gw.test` and `extra_headers` (each ending in CRLF).
    pub async fn get(&self, engine: Engine, target: &str, extra_headers: &str) -> RawResponse {
        let request = format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{extra_headers}\r\n");
        self.exchange(engine, &request).await
    }

    /// A client for the TLS listener that speaks HTTP/2 (by ALPN).
    pub fn http2(&self) -> reqwest::Client {
        tls::client(&self.cert_pem, &self.gw, false)
    }

    /// `https://localhost:PORT{path}` on the TLS listener.
    pub fn tls_url(&self, path: &str) -> String {
        tls::url(&self.gw, path)
    }
}
