//! Malformed upstream responses (RFC 9112 §6): one table of scripted answers, run through
//! both HTTP/1.1 engines (the fast lane: a body-less GET on the plain listener; hyper: the
//! same GET over the TLS listener, and a POST with a body on the plain listener), each
//! expecting the same outcome: a 502 on a connection that stays usable, or an aborted
//! client connection once the head is out. After every case the next request on the same
//! gateway succeeds, and no upstream connection is reused after a refused answer.

use crate::common::engines::{
    assert_outcome, check_outcome, exchange_outcome, Engine, Engines, Expect, ALL_ENGINES,
    BAD_GATEWAY, RAW_ENGINES,
};
use crate::common::raw::{self, Outcome};
use crate::common::route;
use crate::common::scripted::{Scripted, Step};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A response head of `N` bytes with an empty body.
const fn head_of<const N: usize>() -> [u8; N] {
    let mut head = [b'a'; N];
    let start = b"HTTP/1.1 200 OK\r\nX-Big: ";
    let mut i = 0;
    while i < start.len() {
        head[i] = start[i];
        i += 1;
    }
    let end = b"\r\nContent-Length: 0\r\n\r\n";
    let mut j = 0;
    while j < end.len() {
        head[N - end.len() + j] = end[j];
        j += 1;
    }
    head
}

/// Past the gateway's 64 KiB limit on response heads (hyper's own is 400 KiB), and below.
static HUGE_HEAD: [u8; 100 * 1024] = head_of();
static BIG_HEAD: [u8; 48 * 1024] = head_of();

const CHUNKED_HEAD: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// (path, what the upstream does, what the client sees). The upstream closes where a
/// case needs it so that hyper's decoder, which waits for more bytes, ends as soon as the
/// fast lane does; elsewhere it keeps the connection, tainted.
const CASES: &[(&str, &[Step], Expect)] = {
    use Expect::Aborted;
    use Step::{Close, Reset, Taint, Write};
    &[
        (
            "/length-beside-chunked",
            &[
                Write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                Taint,
            ],
            BAD_GATEWAY,
        ),
        (
            "/chunked-beside-length",
            &[
                Write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                Taint,
            ],
            BAD_GATEWAY,
        ),
        (
            "/unrequested-switch",
            &[
                Write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
                Taint,
            ],
            BAD_GATEWAY,
        ),
        (
            "/unrequested-h2c",
            &[
                Write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
                Taint,
            ],
            BAD_GATEWAY,
        ),
        (
            "/chunked-from-http10",
            &[
                Write(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
                Taint,
            ],
            BAD_GATEWAY,
        ),
        (
            "/interim-then-close",
            &[Write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"), Close],
            BAD_GATEWAY,
        ),
        ("/not-http", &[Write(b"SSH-2.0-OpenSSH\r\n\r\n"), Taint], BAD_GATEWAY),
        ("/huge-head", &[Write(&HUGE_HEAD), Taint], BAD_GATEWAY),
        ("/big-head", &[Write(&BIG_HEAD)], Expect::Ok("")),
        ("/close-before-head", &[Close], BAD_GATEWAY),
        ("/reset-before-head", &[Reset], BAD_GATEWAY),
        (
            "/close-inside-head",
            &[Write(b"HTTP/1.1 200 OK\r\nContent-Le"), Close],
            BAD_GATEWAY,
        ),
        (
            "/reset-inside-head",
            &[Write(b"HTTP/1.1 200 OK\r\nContent-Le"), Reset],
            BAD_GATEWAY,
        ),
        (
            "/bare-lf-after-size",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\nhello\r\n0\r\n\r\n"), Taint],
            Aborted,
        ),
        (
            "/bare-lf-after-data",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\r\nhello\n0\r\n\r\n"), Taint],
            Aborted,
        ),
        (
            "/bare-lf-after-last-chunk",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\r\nhello\r\n0\r\n\n"), Close],
            Aborted,
        ),
        (
            "/bare-lf-after-trailer",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\r\nhello\r\n0\r\nX-T: t\n\r\n"), Close],
            Aborted,
        ),
        (
            "/chunk-without-size",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\r\nhello\r\n\r\n"), Close],
            Aborted,
        ),
        (
            "/length-cut-by-close",
            &[Write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5"), Close],
            Aborted,
        ),
        (
            "/length-cut-by-reset",
            &[Write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly5"), Reset],
            Aborted,
        ),
        (
            "/chunked-cut-by-close",
            &[Write(CHUNKED_HEAD.as_bytes()), Write(b"5\r\nhel"), Close],
            Aborted,
        ),
        (
            "/until-close-cut-by-reset",
            &[Write(b"HTTP/1.1 200 OK\r\n\r\nno end"), Reset],
            Aborted,
        ),
        (
            "/until-close",
            &[Write(b"HTTP/1.1 200 OK\r\n\r\nuntil close"), Close],
            Expect::Ok("until close"),
        ),
    ]
};

fn script(path: &str, _served: usize) -> Vec<Step> {
    if let Some((_, steps, _)) = CASES.iter().find(|(p, _, _)| *p == path) {
        return steps.to_vec();
    }
    let answer: &[u8] = match path {
        "/switch-to-h2c" => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
        }
        "/switch-to-websocket" => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    };
    vec![Step::Write(answer)]
}

/// Whole answers whose bodies arrive in pieces, for the HTTP/2 client's way through the
/// hyper path (hyper_path::direct reads them off the upstream connection itself).
fn pieces(path: &str, _served: usize) -> Vec<Step> {
    const PAUSE: Step = Step::Sleep(Duration::from_millis(30));
    match path {
        "/length-in-pieces" => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello"),
            PAUSE,
            Step::Write(b" world"),
        ],
        "/chunked-in-pieces" => vec![
            Step::Write(CHUNKED_HEAD.as_bytes()),
            Step::Write(b"5\r\nhel"),
            PAUSE,
            Step::Write(b"lo\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n"),
            PAUSE,
            Step::Write(b"\r\n"),
        ],
        "/stalled-body" => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello"),
            Step::Hang,
        ],
        _ => script(path, _served),
    }
}

/// What a reqwest client sees of one request through `engine`: a connection or stream
/// ended before the whole message (before or after the head) is `Aborted`.
async fn reqwest_outcome(both: &Engines, engine: Engine, path: &str) -> Outcome {
    let Ok(response) = both.request(engine, path).send().await else {
        return Outcome::Aborted;
    };
    let status = response.status().as_u16();
    match response.text().await {
        Ok(body) => Outcome::Answered(status, body),
        Err(_) => Outcome::Aborted,
    }
}

/// Records a case whose next request on the same gateway was not served.
fn check_next(what: &str, next: &Outcome, mismatches: &mut Vec<String>) {
    if *next != Outcome::Answered(200, "ok".into()) {
        mismatches.push(format!("{what}: the next request got {next:?}"));
    }
}

/// Bodies that arrive in pieces reach the client whole on every engine (a chunked one
/// de-chunked where hyper frames the body anew), the upstream connection goes back to the
/// pool after each, and a body that stalls for longer than the route's `timeout` aborts
/// the client's connection (over HTTP/2, its stream).
#[tokio::test]
async fn bodies_in_pieces_arrive_whole_over_one_upstream_connection_on_every_engine() {
    let up = Scripted::spawn(pieces).await;
    let both = Engines::spawn(&route(
        "api",
        "/",
        &up.url,
        "auth = \"none\"\ntimeout = \"500ms\"",
    ))
    .await;
    for engine in ALL_ENGINES {
        for round in 0..3 {
            for path in ["/length-in-pieces", "/chunked-in-pieces", "/ok"] {
                let outcome = reqwest_outcome(&both, engine, path).await;
                let body = if path == "/ok" { "ok" } else { "hello world" };
                let what = format!("{engine:?} {path}, round {round}");
                assert_eq!(outcome, Outcome::Answered(200, body.into()), "{what}");
            }
        }
    }
    assert_eq!(up.connections(), 1, "each answer's connection was reused");
    for engine in ALL_ENGINES {
        let stalled = reqwest_outcome(&both, engine, "/stalled-body").await;
        assert_eq!(stalled, Outcome::Aborted, "{engine:?}");
        let next = reqwest_outcome(&both, engine, "/ok").await;
        assert_eq!(next, Outcome::Answered(200, "ok".into()), "{engine:?}");
    }
}

#[tokio::test]
async fn malformed_upstream_responses_get_the_same_answer_on_both_engines() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route(
        "api",
        "/",
        &up.url,
        "auth = \"none\"\ntimeout = \"5s\"",
    ))
    .await;
    let mut mismatches = Vec::new();
    for engine in RAW_ENGINES {
        for (path, _, expect) in CASES {
            let what = format!("{engine:?} {path}");
            let mut conn = both.connect(engine).await;
            let outcome = exchange_outcome(&mut conn, engine, path).await;
            mismatches.extend(check_outcome(&outcome, *expect, &what).err());
            // A 502 keeps the client connection; after an abort or a body delimited by the
            // close, the next request needs a new one.
            if outcome == Outcome::Aborted || !matches!(expect, Expect::Error(..)) {
                conn = both.connect(engine).await;
            }
            let next = exchange_outcome(&mut conn, engine, "/ok").await;
            check_next(&what, &next, &mut mismatches);
        }
    }
    // HTTP/2 (hyper's server, the body-less request sent and read with the fast lane's
    // wire code): the same 502s, a reset stream where HTTP/1.1 is aborted, and the
    // connection to the gateway serving on. An HTTP/2 client bounds the header list it
    // takes (hyper's, under reqwest, to 16 KiB): a 48 KiB head cannot reach it whichever
    // way the gateway read it.
    for (path, _, expect) in CASES.iter().filter(|(path, ..)| *path != "/big-head") {
        let what = format!("Http2 {path}");
        let outcome = reqwest_outcome(&both, Engine::Http2, path).await;
        mismatches.extend(check_outcome(&outcome, *expect, &what).err());
        let next = reqwest_outcome(&both, Engine::Http2, "/ok").await;
        check_next(&what, &next, &mut mismatches);
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert_eq!(
        up.reused_after_taint(),
        0,
        "no upstream connection is reused after a refused or broken answer"
    );
}

/// Upgrade requests never take the fast lane, so this is hyper's alone (the table above
/// has the unrequested switches): a 101 is relayed only when it switches to WebSocket in
/// answer to a request that asked for WebSocket.
#[tokio::test]
async fn a_switch_is_relayed_only_to_websocket_in_answer_to_a_websocket_upgrade() {
    let up = Scripted::spawn(script).await;
    let both = Engines::spawn(&route("api", "/", &up.url, "auth = \"none\"")).await;
    let upgrade = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let refused = [
        ("/switch-to-h2c", "websocket"),
        ("/switch-to-h2c", "h2c"),
        ("/switch-to-websocket", "h2c"),
    ];
    for (path, protocol) in refused {
        let mut conn = both.connect(Engine::FastLane).await;
        conn.write_all(upgrade(path, protocol).as_bytes())
            .await
            .expect("write");
        let outcome = raw::read_outcome(conn.as_mut()).await;
        assert_outcome(&outcome, BAD_GATEWAY, &format!("{protocol} asked, {path}"));
    }

    let mut conn = both.connect(Engine::FastLane).await;
    conn.write_all(upgrade("/switch-to-websocket", "websocket").as_bytes())
        .await
        .expect("write");
    let (head, _) = raw::read_head(&mut conn).await;
    assert_eq!(head.status, 101, "{}", head.head);
    assert_eq!(head.header("upgrade"), Some("websocket"));
}

/// Every connection's first request is answered; a second one is met with a close.
fn closes_second(_path: &str, served: usize) -> Vec<Step> {
    if served >= 2 {
        return vec![Step::Close];
    }
    vec![Step::Write(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )]
}

/// A pooled upstream connection that closes without a byte of answer after the request was
/// written is tried again on a fresh one only for an idempotent request (RFC 9110 §9.2.2:
/// the upstream may have acted on it). Over HTTP/2, where a body-less request of any method
/// is sent with the wire code the fast lane uses.
#[tokio::test]
async fn a_silent_close_is_retried_for_an_idempotent_request_only() {
    let up = Scripted::spawn(closes_second).await;
    let both = Engines::spawn(&route("api", "/", &up.url, "auth = \"none\"")).await;
    let send = |method: reqwest::Method| {
        let request = both
            .http2()
            .request(method, both.tls_url("/x"))
            .version(reqwest::Version::HTTP_2);
        async move { request.send().await.expect("an answer").status().as_u16() }
    };
    assert_eq!(send(reqwest::Method::GET).await, 200);
    assert_eq!(up.connections(), 1);
    assert_eq!(send(reqwest::Method::GET).await, 200, "sent again, afresh");
    assert_eq!(up.connections(), 2);
    // A POST without a body is not idempotent, and takes the same path as the GETs.
    assert_eq!(send(reqwest::Method::POST).await, 502, "not sent again");
    assert_eq!(up.connections(), 2);
}
