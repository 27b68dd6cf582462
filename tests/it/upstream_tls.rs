//! `https://` upstreams in the one connection pool: a real TLS server on loopback with a
//! certificate from a test CA (trusted through `[server] upstream_ca`), reached through the
//! fast lane (a plain GET) and hyper (HTTP/2 over the TLS listener, a POST with a body):
//! answers, warm TLS connections reused across engines, the gauges, the idle budget, a
//! certificate the gateway must not trust, an upstream that closes an idle connection, and
//! reloads.

use crate::common::scripted::{Scripted, Step};
use crate::common::tls::TestCa;
use crate::common::{route, TestGateway};
use crate::upstream_pool::{
    config, gateway, gauges, once, reload, script, wait_for_idle, Way, CHUNK, CHUNKS, UPLOAD, WAYS,
};
use std::time::{Duration, Instant};

/// `upstream_ca = "…"` naming `ca`'s PEM file.
fn trusting(ca: &TestCa) -> String {
    format!("upstream_ca = {:?}", ca.pem_path().display().to_string())
}

/// A TLS upstream with a certificate `ca` issued for `localhost`, playing [`script`].
async fn tls_upstream(ca: &TestCa) -> Scripted {
    Scripted::spawn_tls(script, ca.server_config(&["localhost", "127.0.0.1"])).await
}

/// `path` requested `way`, bounded: a failed upstream handshake must not hang a request.
async fn bounded(gw: &TestGateway, cert: &str, way: Way, path: &str) -> (u16, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(20), once(gw, cert, way, path))
        .await
        .unwrap_or_else(|_| panic!("{way:?} {path}: no answer within 20 s"))
}

/// Every engine, each request from a short-lived client: one TLS connection (SNI the
/// upstream's host name, ALPN `http/1.1`) made by the first carries them all, plain answers,
/// a chunked body down and a large body up alike.
#[tokio::test]
async fn every_engine_reaches_an_https_upstream_over_one_warm_tls_connection() {
    let ca = TestCa::new("upstream test CA");
    let up = tls_upstream(&ca).await;
    let (gw, cert) = gateway(&up, &trusting(&ca)).await;
    assert_eq!(gauges(&gw.metrics().await, &up), (Some(0.0), Some(0.0)));
    for round in 0..2 {
        for way in WAYS {
            let (status, body) = bounded(&gw, &cert, way, "/ok").await;
            assert_eq!(
                (status, body.as_slice()),
                (200, b"ok".as_slice()),
                "{way:?}"
            );
            wait_for_idle(&gw, &up, 1.0).await;
            let (status, body) = bounded(&gw, &cert, way, "/big").await;
            assert_eq!((status, body.len()), (200, CHUNKS * CHUNK.len()), "{way:?}");
            assert!(body.iter().all(|&b| b == b'x'));
            wait_for_idle(&gw, &up, 1.0).await;
            assert_eq!(up.connections(), 1, "round {round}, {way:?}");
        }
    }
    let upload = crate::common::client()
        .post(gw.url("/ok"))
        .body(vec![b'u'; UPLOAD])
        .send()
        .await
        .expect("a POST with a large body");
    assert_eq!(upload.status(), 200);
    wait_for_idle(&gw, &up, 1.0).await;
    assert_eq!(
        up.connections(),
        1,
        "the upload went over the warm connection"
    );
    let hello = up.last_hello().expect("a TLS handshake");
    assert_eq!(
        hello.0.as_deref(),
        Some("localhost"),
        "SNI is the upstream's host"
    );
    assert_eq!(hello.1.as_deref(), Some(b"http/1.1".as_slice()), "ALPN");
}

/// A request in flight counts its TLS connection active; a budget of 0 keeps none idle, so
/// each request makes (and counts) a fresh TLS connection.
#[tokio::test]
async fn https_connections_are_counted_and_kept_within_the_budget() {
    let ca = TestCa::new("upstream test CA");
    let up = tls_upstream(&ca).await;
    let extra = format!("{}\nupstream_max_idle = 0", trusting(&ca));
    let (gw, cert) = gateway(&up, &extra).await;
    for (i, way) in WAYS.into_iter().enumerate() {
        let slow = bounded(&gw, &cert, way, "/slow");
        let watch = async {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let now = gauges(&gw.metrics().await, &up);
                if now == (Some(0.0), Some(1.0)) {
                    return;
                }
                assert!(Instant::now() < deadline, "{way:?}: never active: {now:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let ((status, _), ()) = tokio::join!(slow, watch);
        assert_eq!(status, 200, "{way:?}");
        wait_for_idle(&gw, &up, 0.0).await;
        assert_eq!(
            up.connections(),
            i + 1,
            "{way:?}: none kept, a fresh one each"
        );
    }
}

/// A TLS connection the pool lets go ends in order: the upstream reads tollgate's
/// `close_notify` before the FIN, not a truncation to log, whether the connection had no
/// room in the pool (a budget of 0) or aged out of it (`upstream_idle_timeout`).
#[tokio::test]
async fn tls_connections_the_pool_lets_go_end_with_close_notify() {
    let ca = TestCa::new("upstream test CA");
    for budget in ["upstream_max_idle = 0", "upstream_idle_timeout = \"100ms\""] {
        let up = tls_upstream(&ca).await;
        let extra = format!("{}\n{budget}", trusting(&ca));
        let (gw, cert) = gateway(&up, &extra).await;
        for way in WAYS {
            let (status, _) = bounded(&gw, &cert, way, "/ok").await;
            assert_eq!(status, 200, "{budget}, {way:?}");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while up.ended() < up.connections() {
            assert!(
                Instant::now() < deadline,
                "{budget}: {} of {} connections still open",
                up.connections() - up.ended(),
                up.connections()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(up.connections() >= 1, "{budget}");
        assert_eq!(
            up.closed_in_order(),
            up.connections(),
            "{budget}: every connection ended with close_notify"
        );
    }
}

/// An upstream certificate from a CA the gateway does not trust, or one issued for another
/// name, is a 502 on every engine, at once, with no TLS connection made; the gateway's other
/// answers are unaffected.
#[tokio::test]
async fn an_untrusted_or_misnamed_upstream_certificate_is_a_502_on_every_engine() {
    let ca = TestCa::new("upstream test CA");
    let stranger = TestCa::new("a CA nobody configured");
    let untrusted = Scripted::spawn_tls(script, stranger.server_config(&["localhost"])).await;
    let misnamed = Scripted::spawn_tls(script, ca.server_config(&["other.test"])).await;
    let trusted = tls_upstream(&ca).await;
    let routes = [
        route(
            "untrusted",
            "/untrusted",
            &untrusted.url,
            "auth = \"none\"\nstrip_prefix = true",
        ),
        route(
            "misnamed",
            "/misnamed",
            &misnamed.url,
            "auth = \"none\"\nstrip_prefix = true",
        ),
        route("trusted", "/", &trusted.url, "auth = \"none\""),
    ]
    .concat();
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = crate::common::tls::write_self_signed(dir.path());
    let gw = TestGateway::spawn_in(dir, &config(&trusting(&ca), &routes)).await;
    for way in WAYS {
        for path in ["/untrusted/ok", "/misnamed/ok"] {
            let (status, body) = bounded(&gw, &cert, way, path).await;
            let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
            assert_eq!(
                (status, body["error"].as_str()),
                (502, Some("bad_gateway")),
                "{way:?} {path}"
            );
        }
        let (status, _) = bounded(&gw, &cert, way, "/ok").await;
        assert_eq!(status, 200, "{way:?}");
    }
    assert_eq!((untrusted.connections(), misnamed.connections()), (0, 0));
    let metrics = gw.metrics().await;
    assert_eq!(
        gauges(&metrics, &untrusted),
        (Some(0.0), Some(0.0)),
        "{metrics}"
    );
}

/// The upstream ends an idle TLS connection the way servers do on their idle timeout: an
/// unsolicited `408`, `close_notify`, FIN. The pool sees that before reusing it, so the next
/// request, whichever engine serves it, is answered over a fresh connection, never with the
/// stray `408`.
#[tokio::test]
async fn an_upstream_ending_an_idle_tls_connection_costs_no_request() {
    static IDLE: tokio::sync::Notify = tokio::sync::Notify::const_new();
    fn closing(path: &str, served: usize) -> Vec<Step> {
        match path {
            "/bye" => vec![
                Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye"),
                // Once the gateway has put the connection back in its pool.
                Step::WaitFor(&IDLE),
                Step::Write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                Step::Close,
            ],
            _ => script(path, served),
        }
    }
    let ca = TestCa::new("upstream test CA");
    let up = Scripted::spawn_tls(closing, ca.server_config(&["localhost"])).await;
    let (gw, cert) = gateway(&up, &trusting(&ca)).await;
    for (i, way) in WAYS.into_iter().enumerate() {
        let (status, body) = bounded(&gw, &cert, way, "/bye").await;
        assert_eq!(
            (status, body.as_slice()),
            (200, b"bye".as_slice()),
            "{way:?}"
        );
        wait_for_idle(&gw, &up, 1.0).await;
        IDLE.notify_one();
        // The upstream has closed it (and every one before it), and the gateway is done
        // with it, back in the pool or not.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let active = gauges(&gw.metrics().await, &up).1;
            if up.ended() == up.connections() && active == Some(0.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{way:?}: the upstream never closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (status, body) = bounded(&gw, &cert, way, "/ok").await;
        assert_eq!(
            (status, body.as_slice()),
            (200, b"ok".as_slice()),
            "{way:?}"
        );
        // The `/ok` connection serves the next `/bye`, which the upstream then closes.
        assert_eq!(up.connections(), i + 2, "{way:?}");
    }
}

/// A reload that keeps the CA keeps the warm TLS connection; new connections after a reload
/// are made with the reloaded `upstream_ca` (trusting another CA instead: 502).
#[tokio::test]
async fn reloads_keep_https_upstreams_working_and_apply_upstream_ca() {
    let ca = TestCa::new("upstream test CA");
    let other = TestCa::new("another CA");
    let up = tls_upstream(&ca).await;
    let (gw, cert) = gateway(&up, &trusting(&ca)).await;
    let (status, _) = bounded(&gw, &cert, Way::FastLane, "/ok").await;
    assert_eq!(status, 200);
    wait_for_idle(&gw, &up, 1.0).await;

    let routes = format!(
        "{}{}",
        route("a", "/a", &up.url, "auth = \"none\"\nstrip_prefix = true"),
        route("b", "/", &up.url, "auth = \"none\"")
    );
    reload(&gw, &config(&trusting(&ca), &routes)).await;
    for (way, path) in [(Way::Http2, "/a/ok"), (Way::Post, "/ok")] {
        let (status, _) = bounded(&gw, &cert, way, path).await;
        assert_eq!(status, 200, "{way:?}");
        wait_for_idle(&gw, &up, 1.0).await;
    }
    assert_eq!(
        up.connections(),
        1,
        "the reload kept the warm TLS connection"
    );

    // None kept idle: each request makes a new TLS connection under the reloaded config.
    let none_idle = format!("{}\nupstream_max_idle = 0", trusting(&ca));
    reload(&gw, &config(&none_idle, &routes)).await;
    for way in WAYS {
        let (status, _) = bounded(&gw, &cert, way, "/ok").await;
        assert_eq!(status, 200, "{way:?}");
    }
    wait_for_idle(&gw, &up, 0.0).await;
    assert_eq!(
        up.connections(),
        3,
        "the warm one served the first, two fresh the rest"
    );

    let distrust = format!("{}\nupstream_max_idle = 0", trusting(&other));
    reload(&gw, &config(&distrust, &routes)).await;
    for way in WAYS {
        let (status, _) = bounded(&gw, &cert, way, "/ok").await;
        assert_eq!(
            status, 502,
            "{way:?}: the upstream's CA is no longer trusted"
        );
    }
}

/// A body delimited by the close is whole when the upstream ends it with `close_notify`, and
/// broken off (never a clean end for the client) when the TCP connection just closes: a
/// truncation attack looks the same.
#[tokio::test]
async fn a_body_until_the_close_needs_the_upstreams_close_notify_to_be_whole() {
    fn until_close(path: &str, served: usize) -> Vec<Step> {
        let head = Step::Write(b"HTTP/1.1 200 OK\r\n\r\nwhole");
        match path {
            "/notify" => vec![head, Step::Close],
            "/bare" => vec![head, Step::CloseBare],
            _ => script(path, served),
        }
    }
    let ca = TestCa::new("upstream test CA");
    let up = Scripted::spawn_tls(until_close, ca.server_config(&["localhost"])).await;
    let (gw, cert) = gateway(&up, &trusting(&ca)).await;
    for way in WAYS {
        let (status, body) = bounded(&gw, &cert, way, "/notify").await;
        assert_eq!(
            (status, body.as_slice()),
            (200, b"whole".as_slice()),
            "{way:?}"
        );
        let request = match way {
            Way::FastLane => crate::common::client().get(gw.url("/bare")),
            Way::Http2 => crate::common::tls::client(&cert, &gw, false)
                .get(crate::common::tls::url(&gw, "/bare"))
                .version(reqwest::Version::HTTP_2),
            Way::Post => crate::common::client().post(gw.url("/bare")).body("ping"),
        };
        let read = async { request.send().await?.bytes().await };
        let read = tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("an answer or an abort within 20 s");
        assert!(read.is_err(), "{way:?}: a cut body read as whole: {read:?}");
    }
}
