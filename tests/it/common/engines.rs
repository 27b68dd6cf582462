//! One gateway reached through both HTTP/1.1 engines: the fast lane (a body-less GET on the
//! plain listener, kept alive) and hyper (the same GET over the TLS listener), so a table of
//! cases can assert that both give the same answer.

use super::{tls, TestGateway};

/// The engine a request is meant to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    FastLane,
    Hyper,
}

pub const BOTH: [Engine; 2] = [Engine::FastLane, Engine::Hyper];

/// tollgate with plain, TLS and internal listeners, and an HTTP/1.1 client for each engine.
pub struct Engines {
    pub gw: TestGateway,
    plain: reqwest::Client,
    tls: reqwest::Client,
}

impl Engines {
    /// Starts tollgate with `body` (routes, verify, oauth) after its `[server]` section.
    pub async fn spawn(body: &str) -> Engines {
        let (gw, cert) = tls::spawn_gateway(body).await;
        let tls = tls::client(&cert, &gw, true);
        Engines {
            gw,
            plain: super::client(),
            tls,
        }
    }

    /// A GET of `path` that `engine` serves.
    pub fn get(&self, engine: Engine, path: &str) -> reqwest::RequestBuilder {
        match engine {
            Engine::FastLane => self.plain.get(self.gw.url(path)),
            Engine::Hyper => self.tls.get(tls::url(&self.gw, path)),
        }
    }

    /// `GET path` with `Authorization: Bearer token` through `engine`.
    pub async fn bearer(&self, engine: Engine, path: &str, token: &str) -> reqwest::Response {
        self.get(engine, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{engine:?} GET {path}: {e}"))
    }
}
