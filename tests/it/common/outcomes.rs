//! One gateway, both HTTP/1.1 engines, judged by how a response ends: the fast lane (a
//! body-less GET on the plain listener, or over TLS) and hyper (the same GET over a TLS
//! listener set to hyper alone, or a POST with a body on the plain listener). A rule about
//! what the client gets back from an upstream is run through [`ENGINES`] and must give the
//! same [`Outcome`] on each. Over TLS an aborted response must not end in a `close_notify`,
//! which would make a cut body look whole.

use super::raw::{self, Outcome};
use super::{tls, TestGateway};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The ways a client reaches the two engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A body-less GET on the plain listener.
    FastLane,
    /// The same GET over TLS (HTTP/1.1 by ALPN), as the application serves it.
    FastLaneTls,
    /// The same GET over a TLS listener set to hyper alone.
    HyperTls,
    /// A POST with a small body on the plain listener.
    HyperPost,
}

pub const ENGINES: [Engine; 4] = [
    Engine::FastLane,
    Engine::FastLaneTls,
    Engine::HyperTls,
    Engine::HyperPost,
];

/// A byte stream to either listener.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// tollgate with its plain and TLS listeners (the TLS one set to hyper alone), and the
/// certificate its TLS clients trust; and a second tollgate with the same routes whose TLS
/// listener starts HTTP/1.1 on the fast lane, as the application's does.
pub struct Both {
    pub gateway: TestGateway,
    pub cert: String,
    pub tls_lane: TestGateway,
    tls_lane_cert: String,
}

impl Both {
    /// tollgate with `routes` after a `[server]` section with all three listeners.
    pub async fn spawn(routes: &str) -> Both {
        let (gateway, cert) = tls::spawn_gateway_with(routes, false).await;
        let (tls_lane, tls_lane_cert) = tls::spawn_gateway_with(routes, true).await;
        Both {
            gateway,
            cert,
            tls_lane,
            tls_lane_cert,
        }
    }

    /// A fresh client connection to the listener `engine` is reached on.
    pub async fn connect(&self, engine: Engine) -> Box<dyn Io> {
        match engine {
            Engine::FastLane | Engine::HyperPost => Box::new(
                tokio::net::TcpStream::connect(self.gateway.public)
                    .await
                    .expect("connect"),
            ),
            Engine::HyperTls => Box::new(tls::connect_raw(&self.cert, &self.gateway).await),
            Engine::FastLaneTls => {
                Box::new(tls::connect_raw(&self.tls_lane_cert, &self.tls_lane).await)
            }
        }
    }
}

/// Sends the request for `path` the way `engine` takes it and reads how it ended.
pub async fn exchange(conn: &mut Box<dyn Io>, engine: Engine, path: &str) -> Outcome {
    let request = match engine {
        Engine::FastLane | Engine::FastLaneTls | Engine::HyperTls => {
            format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        }
        Engine::HyperPost => {
            format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\n\r\nping")
        }
    };
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
