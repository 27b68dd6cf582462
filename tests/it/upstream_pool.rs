//! The one upstream connection pool: per upstream origin, shared by both engines, so a
//! short-lived client finds a warm connection whichever engine serves it; its budget from
//! `[server]`; its connections counted in `tollgate_upstream_connections`. The same for
//! `https://` upstreams: `upstream_tls.rs` (with these helpers).

use crate::common::engines::{Engine, Engines, ALL_ENGINES};
use crate::common::scripted::{Scripted, Step};
use crate::common::{self, route, tls, TestGateway};
use std::time::{Duration, Instant};

pub(crate) const GAUGE: &str = "tollgate_upstream_connections";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// One chunk of `/big`'s chunked body: 32 KiB.
pub(crate) static CHUNK: [u8; 0x8000] = [b'x'; 0x8000];
/// Chunks in `/big`'s body.
pub(crate) const CHUNKS: usize = 8;
/// A request body larger than one read of any buffer on the way.
pub(crate) const UPLOAD: usize = 256 * 1024;

pub(crate) fn script(path: &str, _served: usize) -> Vec<Step> {
    match path {
        // A HEAD's answer: the length a GET would have, no body.
        "/head" => vec![Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")],
        "/slow" => vec![Step::Sleep(Duration::from_millis(400)), Step::Write(OK)],
        "/big" => {
            let mut steps = vec![Step::Write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            )];
            for _ in 0..CHUNKS {
                steps.extend([
                    Step::Write(b"8000\r\n"),
                    Step::Write(&CHUNK),
                    Step::Write(b"\r\n"),
                ]);
            }
            steps.push(Step::Write(b"0\r\n\r\n"));
            steps
        }
        _ => vec![Step::Write(OK)],
    }
}

/// tollgate (plain and TLS listeners, `server_extra` in `[server]`) with one open route
/// to a scripted upstream; the certificate its TLS clients trust.
pub(crate) async fn gateway(up: &Scripted, server_extra: &str) -> (TestGateway, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = tls::write_self_signed(dir.path());
    let routes = route("up", "/", &up.url, "auth = \"none\"");
    let config = config(server_extra, &routes);
    (TestGateway::spawn_in(dir, &config).await, cert)
}

/// The configuration: listeners on port 0 (TLS with the test's certificate),
/// `server_extra` in `[server]`, then `routes`.
pub(crate) fn config(server_extra: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n{server_extra}\n\n\
         [server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n{routes}\n\
         [log]\naccess = \"access.log\"\n"
    )
}

/// Rewrites the running gateway's `gateway.toml` to `text` and reloads it.
pub(crate) async fn reload(gw: &TestGateway, text: &str) {
    std::fs::write(gw.dir.path().join("gateway.toml"), text).expect("write config");
    let running = gw.running.as_ref().expect("the gateway runs");
    if let Err(e) = running.reload().await {
        panic!("reload refused: {e}\n---\n{text}");
    }
}

/// The pool's (idle, active) gauges for `up`'s origin.
pub(crate) fn gauges(metrics: &str, up: &Scripted) -> (Option<f64>, Option<f64>) {
    let series = |state| common::sample(metrics, GAUGE, &[("upstream", &up.url), ("state", state)]);
    (series("idle"), series("active"))
}

/// Waits (at most 5 s) until `up`'s origin has `idle` idle connections and none active.
pub(crate) async fn wait_for_idle(gw: &TestGateway, up: &Scripted, idle: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = gw.metrics().await;
        let now = gauges(&metrics, up);
        if now == (Some(idle), Some(0.0)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "want {idle} idle and none active, have (idle, active) {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a short-lived client reaches the gateway: a client of its own, one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Way {
    /// A GET on the plain listener: the fast lane.
    FastLane,
    /// A GET over TLS in HTTP/2: hyper.
    Http2,
    /// A POST with a body on the plain listener: hyper.
    Post,
}

pub(crate) const WAYS: [Way; 3] = [Way::FastLane, Way::Http2, Way::Post];

/// `path` requested the `way` a fresh client does; the response, read whole.
pub(crate) async fn once(gw: &TestGateway, cert: &str, way: Way, path: &str) -> (u16, Vec<u8>) {
    let request = match way {
        Way::FastLane => common::client().get(gw.url(path)),
        Way::Http2 => tls::client(cert, gw, false)
            .get(tls::url(gw, path))
            .version(reqwest::Version::HTTP_2),
        Way::Post => common::client().post(gw.url(path)).body("ping"),
    };
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{way:?} {path}: {e}"));
    if let Way::Http2 = way {
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
    }
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("whole body");
    (status, body.to_vec())
}

/// Every engine, each request from a client that connects, asks once and goes: all of
/// them are served over the one upstream connection the first left warm. (The engines'
/// second gateway, whose TLS listener runs HTTP/1.1 on the fast lane, has a pool of its
/// own.)
#[tokio::test]
async fn short_lived_clients_through_every_engine_reuse_one_warm_upstream_connection() {
    let up = Scripted::spawn(script).await;
    let engines = Engines::spawn(&route("up", "/", &up.url, "auth = \"none\"")).await;
    for gw in [&engines.gw, &engines.tls_lane] {
        let before = gauges(&gw.metrics().await, &up);
        assert_eq!(before, (Some(0.0), Some(0.0)), "created at zero");
    }
    for round in 0..2 {
        for engine in ALL_ENGINES.into_iter().chain([Engine::FastLaneTls]) {
            let (status, body) = match engine {
                Engine::Http2 => {
                    let client = tls::client(&engines.cert_pem, &engines.gw, false);
                    let response = client
                        .get(engines.tls_url("/ok"))
                        .version(reqwest::Version::HTTP_2)
                        .send()
                        .await
                        .expect("HTTP/2 request");
                    assert_eq!(response.version(), reqwest::Version::HTTP_2);
                    let status = response.status().as_u16();
                    (status, response.text().await.expect("body"))
                }
                // A connection of its own, one request, then closed.
                _ => {
                    let response = engines.get(engine, "/ok", "").await;
                    (response.status, response.body)
                }
            };
            assert_eq!((status, body.as_str()), (200, "ok"), "{engine:?}");
            let gw = match engine {
                Engine::FastLaneTls => &engines.tls_lane,
                _ => &engines.gw,
            };
            // The connection is back in the pool before the next client comes.
            wait_for_idle(gw, &up, 1.0).await;
            // One for each gateway: the second's comes last in the first round.
            let expected = match (round, engine) {
                (0, Engine::FastLaneTls) | (1, _) => 2,
                _ => 1,
            };
            assert_eq!(up.connections(), expected, "round {round}, {engine:?}");
        }
    }
}

#[tokio::test]
async fn the_idle_budget_keeps_no_more_than_upstream_max_idle() {
    let up = Scripted::spawn(script).await;
    let (gw, cert) = gateway(&up, "upstream_max_idle = 1").await;
    // Three requests at once, one each way: three upstream connections.
    let (fast, http2, post) = tokio::join!(
        once(&gw, &cert, Way::FastLane, "/slow"),
        once(&gw, &cert, Way::Http2, "/slow"),
        once(&gw, &cert, Way::Post, "/slow"),
    );
    assert_eq!((fast.0, http2.0, post.0), (200, 200, 200));
    assert_eq!(up.connections(), 3, "the three overlapped");
    wait_for_idle(&gw, &up, 1.0).await;
    // The one kept serves the next request.
    let (status, _) = once(&gw, &cert, Way::Http2, "/ok").await;
    assert_eq!(status, 200);
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn no_idle_budget_means_a_fresh_connection_for_every_request() {
    let up = Scripted::spawn(script).await;
    let (gw, cert) = gateway(&up, "upstream_max_idle = 0").await;
    for (i, way) in WAYS.into_iter().enumerate() {
        let (status, _) = once(&gw, &cert, way, "/ok").await;
        assert_eq!(status, 200, "{way:?}");
        wait_for_idle(&gw, &up, 0.0).await;
        assert_eq!(up.connections(), i + 1, "{way:?}");
    }
}

/// A large request body streams up and a large chunked response streams down over a
/// pooled connection, which then goes back to the pool for the next request (through
/// either engine).
#[tokio::test]
async fn bodies_stream_both_ways_over_a_pooled_connection() {
    let up = Scripted::spawn(script).await;
    let (gw, cert) = gateway(&up, "").await;
    let client = tls::client(&cert, &gw, false);
    for round in 0..2 {
        let response = client
            .post(tls::url(&gw, "/big"))
            .version(reqwest::Version::HTTP_2)
            .body(vec![b'u'; UPLOAD])
            .send()
            .await
            .expect("the head arrives");
        assert_eq!(response.status(), 200, "round {round}");
        let body = response.bytes().await.expect("whole body");
        assert_eq!(body.len(), CHUNKS * CHUNK.len(), "round {round}");
        assert!(body.iter().all(|&b| b == b'x'));
        wait_for_idle(&gw, &up, 1.0).await;
    }
    let (status, body) = once(&gw, &cert, Way::FastLane, "/big").await;
    assert_eq!((status, body.len()), (200, CHUNKS * CHUNK.len()));
    let head = client
        .head(tls::url(&gw, "/head"))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    wait_for_idle(&gw, &up, 1.0).await;
    assert_eq!(up.connections(), 1, "one connection carried every exchange");
}

/// A reload keeps the pool of an origin it still names (whichever routes name it), applies a
/// new budget to it, and drops the series of an origin no route names any more.
#[tokio::test]
async fn a_reload_keeps_warm_connections_and_applies_the_budget() {
    let up = Scripted::spawn(script).await;
    let other = Scripted::spawn(script).await;
    let (gw, cert) = gateway(&up, "").await;
    let (status, _) = once(&gw, &cert, Way::Http2, "/ok").await;
    assert_eq!(status, 200);
    wait_for_idle(&gw, &up, 1.0).await;

    // Two routes now name the origin, under other prefixes: one pool, still warm.
    let both = format!(
        "{}{}",
        route("a", "/a", &up.url, "auth = \"none\"\nstrip_prefix = true"),
        route("b", "/", &up.url, "auth = \"none\"")
    );
    reload(&gw, &config("", &both)).await;
    for (way, path) in [(Way::FastLane, "/a/ok"), (Way::Post, "/ok")] {
        let (status, body) = once(&gw, &cert, way, path).await;
        assert_eq!(
            (status, body.as_slice()),
            (200, b"ok".as_slice()),
            "{way:?}"
        );
        wait_for_idle(&gw, &up, 1.0).await;
    }
    assert_eq!(up.connections(), 1, "the reload kept the warm connection");

    // No idle connection allowed: the warm one serves once more and is then closed.
    reload(&gw, &config("upstream_max_idle = 0", &both)).await;
    let (status, _) = once(&gw, &cert, Way::FastLane, "/ok").await;
    assert_eq!(status, 200);
    wait_for_idle(&gw, &up, 0.0).await;
    assert_eq!(up.connections(), 1);

    // The origin is no route's any more: its series go, the new one's are there at zero.
    reload(
        &gw,
        &config("", &route("c", "/", &other.url, "auth = \"none\"")),
    )
    .await;
    let metrics = gw.metrics().await;
    assert_eq!(gauges(&metrics, &up), (None, None), "{metrics}");
    assert_eq!(
        gauges(&metrics, &other),
        (Some(0.0), Some(0.0)),
        "{metrics}"
    );
}
