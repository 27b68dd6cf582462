//! Upstream faults on real sockets, through both HTTP/1.1 engines: an upstream that refuses
//! connections, resets in the middle of a body, sends no head, or pauses inside a body for
//! longer than the route's `timeout`. Each gives its documented outcome, and afterwards the
//! next good request on the same gateway succeeds.

use crate::common::engines::{
    assert_outcome, exchange_outcome, Engine, Engines, Expect, BAD_GATEWAY, RAW_ENGINES,
};
use crate::common::raw::Outcome;
use crate::common::scripted::{Scripted, Step};
use crate::common::{refused_url, route, tls};
use std::time::{Duration, Instant};

const OPEN: &str = "auth = \"none\"";
/// More than the socket buffers between the upstream and the client hold, so the upstream's
/// write of it finishes only once the client has been reading the body.
static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
/// The route timeout of the slow-upstream cases.
const TIMEOUT: Duration = Duration::from_secs(1);

fn script(path: &str, _served: usize) -> Vec<Step> {
    use Step::{Hang, Reset, Sleep, Taint, Write};
    let pause = TIMEOUT * 2 / 5;
    match path {
        "/reset-mid-body" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n"),
            Write(&BIG),
            Reset,
        ],
        "/no-head" => vec![Taint, Hang],
        "/stalled-body" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5"),
            Taint,
            Hang,
        ],
        // Slower in all than the timeout, but no pause as long.
        "/slow-body" => vec![
            Write(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\naaaaa"),
            Sleep(pause),
            Write(b"bbbbb"),
            Sleep(pause),
            Write(b"ccccc"),
            Sleep(pause),
        ],
        _ => vec![Write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")],
    }
}

/// Sends `path` through `engine` on `both` and checks the outcome, then that the next
/// request (on the same client connection if it was answered, else on a new one) is served.
async fn fault_then_recovery(
    both: &Engines,
    engine: Engine,
    path: &str,
    expect: Expect,
) -> Outcome {
    let what = format!("{engine:?} {path}");
    let mut conn = both.connect(engine).await;
    let outcome = exchange_outcome(&mut conn, engine, path).await;
    assert_outcome(&outcome, expect, &what);
    if outcome == Outcome::Aborted {
        conn = both.connect(engine).await;
    }
    let next = exchange_outcome(&mut conn, engine, "/ok").await;
    assert_eq!(
        next,
        Outcome::Answered(200, "ok".into()),
        "{what}: next request"
    );
    outcome
}

#[tokio::test]
async fn an_upstream_refusing_connections_is_502_and_the_next_request_is_served() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&format!(
        "{}{}",
        route("down", "/down", &refused_url(), OPEN),
        route("up", "/", &up.url, OPEN)
    ))
    .await;
    for engine in RAW_ENGINES {
        fault_then_recovery(&both, engine, "/down/x", BAD_GATEWAY).await;
    }
}

#[tokio::test]
async fn an_upstream_reset_mid_body_aborts_the_client_connection() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route("up", "/", &up.url, OPEN)).await;
    for engine in RAW_ENGINES {
        fault_then_recovery(&both, engine, "/reset-mid-body", Expect::Aborted).await;
    }
}

#[tokio::test]
async fn an_upstream_without_a_head_within_the_route_timeout_is_504() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route(
        "up",
        "/",
        &up.url,
        "auth = \"none\"\ntimeout = \"1s\"",
    ))
    .await;
    for engine in RAW_ENGINES {
        let started = Instant::now();
        fault_then_recovery(
            &both,
            engine,
            "/no-head",
            Expect::Error(504, "gateway_timeout"),
        )
        .await;
        assert!(
            started.elapsed() >= TIMEOUT,
            "{engine:?}: not before the timeout"
        );
    }
    assert_eq!(
        up.reused_after_taint(),
        0,
        "the silent connection is given up"
    );
}

/// nginx's `proxy_read_timeout` rule: the route's `timeout` bounds each pause between two
/// reads of the body, not the whole body.
#[tokio::test]
async fn a_body_pause_longer_than_the_route_timeout_aborts_the_client_connection() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route(
        "up",
        "/",
        &up.url,
        "auth = \"none\"\ntimeout = \"1s\"",
    ))
    .await;
    for engine in RAW_ENGINES {
        let started = Instant::now();
        fault_then_recovery(&both, engine, "/stalled-body", Expect::Aborted).await;
        let took = started.elapsed();
        assert!(
            took >= TIMEOUT && took < TIMEOUT * 5,
            "{engine:?}: aborted after {took:?}"
        );
        let started = Instant::now();
        fault_then_recovery(&both, engine, "/slow-body", Expect::Ok("aaaaabbbbbccccc")).await;
        assert!(
            started.elapsed() > TIMEOUT,
            "{engine:?}: the whole body took longer than the timeout"
        );
    }
    assert_eq!(
        up.reused_after_taint(),
        0,
        "the stalled connection is given up"
    );
}

/// Over HTTP/2 an aborted body is a reset stream: the client's read of it fails, and the
/// connection goes on serving other streams.
#[tokio::test]
async fn an_aborted_body_is_an_error_for_an_http2_client_too() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route(
        "up",
        "/",
        &up.url,
        "auth = \"none\"\ntimeout = \"1s\"",
    ))
    .await;
    let client = tls::client(&both.cert_pem, &both.gw, false);
    for path in ["/reset-mid-body", "/stalled-body"] {
        let response = client
            .get(tls::url(&both.gw, path))
            .send()
            .await
            .expect("the head arrives");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.is_err(), "{path}: the body fails");
        let next = client
            .get(tls::url(&both.gw, "/ok"))
            .send()
            .await
            .expect("next request");
        assert_eq!(
            next.text().await.expect("body"),
            "ok",
            "{path}: next request"
        );
    }
}
