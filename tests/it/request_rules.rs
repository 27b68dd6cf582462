//! What a client request may carry to an upstream, and what an error tells the client, each
//! rule sent through both HTTP/1.1 engines (the fast lane on the plain listener, hyper on the
//! TLS listener) and, where it applies, HTTP/2: only WebSocket upgrades pass, identity and
//! routing headers cannot be forged in any spelling, one authority per request, no raw `\` or
//! `;` in paths, and no upstream address in error bodies.

use crate::common::engines::{Engines, GET_ENGINES};
use crate::common::raw::{self, RawResponse, Recorder};
use crate::common::{echoed, refused_url, remote_verify, route, Introspector, Upstream};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPEN: &str = "auth = \"none\"";
const WEBSOCKET: &str = "Connection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn json(r: &RawResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: not JSON: {}", r.body))
}

/// A request head as the recording upstream saw it has no line naming `needle`.
fn head_lacks(head: &str, needle: &str) -> bool {
    !head.to_ascii_lowercase().contains(needle)
}

// ---------------------------------------------------------------- upgrades

#[tokio::test]
async fn only_websocket_upgrades_are_passed_and_other_upgrades_arrive_as_plain_requests() {
    let up = Recorder::spawn().await;
    let e = Engines::spawn(&route("api", "/", &up.url(), OPEN)).await;
    // The upstream answers 101 to any Upgrade it sees: none of these may reach it.
    let refused = [
        (
            "GET",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
        ),
        ("GET", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n"),
        ("GET", "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n"),
        ("GET", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n"),
        ("POST", "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n"),
        // Without Upgrade this one takes the fast lane on the plain listener.
        ("GET", "HTTP2-Settings: AAMAAABkAAQAAP__\r\n"),
    ];
    for engine in GET_ENGINES {
        for (method, headers) in refused {
            let body = if method == "POST" { "hi" } else { "" };
            let request = format!("{method} /x HTTP/1.1\r\nHost: gw.test\r\n{headers}\r\n{body}");
            let r = e.exchange(engine, &request).await;
            assert_eq!(r.status, 200, "{engine:?} {headers:?}: {}", r.head);
            // The body is the head the upstream received.
            for gone in ["upgrade", "http2-settings"] {
                assert!(
                    head_lacks(&r.body, gone),
                    "{engine:?} {headers:?}: {}",
                    r.body
                );
            }
        }
    }
    assert_eq!(up.heads().len(), 2 * refused.len());

    for engine in GET_ENGINES {
        let mut stream = e.connect(engine).await;
        let request = format!("GET /ws HTTP/1.1\r\nHost: gw.test\r\n{WEBSOCKET}\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let r = raw::read_response(&mut stream).await;
        assert_eq!(r.status, 101, "{engine:?}: {}", r.head);
        assert_eq!(r.header("upgrade"), Some("websocket"));
        stream.write_all(b"a frame").await.expect("write upgraded");
        let mut back = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
            .await
            .expect("echo within 10s")
            .expect("read upgraded");
        assert_eq!(&back, b"a frame", "{engine:?}");
    }
    let upgraded: Vec<String> = up
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("GET /ws "))
        .collect();
    assert_eq!(upgraded.len(), 2);
    for head in upgraded {
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\nupgrade: websocket"), "{head}");
        assert!(head.contains("\r\nconnection: upgrade"), "{head}");
    }
}

#[tokio::test]
async fn a_websocket_upgrade_meets_the_guard_first() {
    let up = Recorder::spawn().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active("chat-token", "alice", "chat");
    let e = Engines::spawn(&format!(
        "{}{}",
        remote_verify(&introspector, ""),
        route("chat", "/", &up.url(), "scopes = [\"chat\"]")
    ))
    .await;
    for engine in GET_ENGINES {
        let r = e.get(engine, "/ws", WEBSOCKET).await;
        assert_eq!(r.status, 401, "{engine:?}: {}", r.head);
    }
    assert!(up.heads().is_empty(), "{:?}", up.heads());
    for engine in GET_ENGINES {
        let token = "Authorization: Bearer chat-token\r\n";
        let r = e.get(engine, "/ws", &format!("{WEBSOCKET}{token}")).await;
        assert_eq!(r.status, 101, "{engine:?}: {}", r.head);
    }
    for head in up.heads() {
        assert!(head.contains("\r\nx-auth-subject: alice"), "{head}");
    }
}

// ---------------------------------------------------------------- forged headers

/// Headers an upstream could read as the gateway's own, in the spellings clients try.
const FORGED: &str = "X_Auth_Subject: admin\r\nx-auth_scope: everything\r\nX-Auth-Roles: admin\r\n\
    Forwarded: for=203.0.113.9;host=evil.example\r\nX-Real-IP: 203.0.113.9\r\n\
    X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX_Forwarded_For: 203.0.113.9\r\n\
    X_Forwarded_Host: evil.example\r\nX_Forwarded_Proto: https\r\n";

/// Header names (as the echo upstream lists them) that must never arrive.
const NEVER: [&str; 10] = [
    "x_auth_subject",
    "x-auth_scope",
    "x-auth-roles",
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
    "x_forwarded_for",
    "x_forwarded_host",
    "x_forwarded_proto",
];

fn assert_unforged(echo: &Value, identity: bool, context: &str) {
    for name in NEVER {
        assert!(
            echoed(echo, name).is_empty(),
            "{context}: {name} arrived: {echo}"
        );
    }
    let (subject, scope): (&[&str], &[&str]) = if identity {
        (&["alice"], &["email"])
    } else {
        (&[], &[])
    };
    assert_eq!(echoed(echo, "x-auth-subject"), subject, "{context}");
    assert_eq!(echoed(echo, "x-auth-scope"), scope, "{context}");
}

#[tokio::test]
async fn identity_and_routing_headers_in_any_spelling_never_reach_the_upstream() {
    let up = Upstream::echo().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active("mail-token", "alice", "email");
    let e = Engines::spawn(&format!(
        "{}{}{}",
        remote_verify(&introspector, ""),
        route("open", "/open", &up.url(), OPEN),
        route("mail", "/mail", &up.url(), "scopes = [\"email\"]"),
    ))
    .await;
    for engine in GET_ENGINES {
        for (path, token) in [
            ("/open/x", ""),
            ("/mail/x", "Authorization: Bearer mail-token\r\n"),
        ] {
            let r = e.get(engine, path, &format!("{FORGED}{token}")).await;
            assert_eq!(r.status, 200, "{engine:?} {path}: {}", r.head);
            let echo = json(&r);
            assert_unforged(&echo, !token.is_empty(), &format!("{engine:?} {path}"));
            assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"]);
            assert_eq!(echoed(&echo, "x-forwarded-host"), ["gw.test"]);
        }
    }
    // HTTP/2 on the TLS listener: the same rules.
    let mut request = e
        .http2()
        .get(e.tls_url("/mail/x"))
        .bearer_auth("mail-token");
    for line in FORGED.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(": ").expect("name: value");
        request = request.header(name, value);
    }
    let r = request.send().await.expect("sent");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.expect("echo");
    assert_unforged(&echo, true, "HTTP/2");
}

// ---------------------------------------------------------------- one authority

#[tokio::test]
async fn one_authority_is_routed_on_and_forwarded() {
    let a = Upstream::named("a").await;
    let any = Upstream::named("any").await;
    let e = Engines::spawn(&format!(
        "{}{}",
        route("a", "/", &a.url(), &format!("{OPEN}\nhost = \"a.example\"")),
        route("any", "/", &any.url(), OPEN),
    ))
    .await;
    let cases = [
        // Origin form (the fast lane on the plain listener): Host is the authority.
        (
            "GET /x HTTP/1.1\r\nHost: A.Example:8080\r\n\r\n",
            "a",
            Some("A.Example:8080"),
        ),
        (
            "GET /x HTTP/1.1\r\nHost: b.example\r\n\r\n",
            "any",
            Some("b.example"),
        ),
        // Absolute form: the target's authority wins over Host, for routing and forwarding.
        (
            "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n",
            "a",
            Some("a.example"),
        ),
        (
            "GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "any",
            Some("b.example"),
        ),
        // HTTP/1.0 need not name one.
        ("GET /x HTTP/1.0\r\n\r\n", "any", None),
    ];
    for engine in GET_ENGINES {
        for (request, upstream, forwarded_host) in cases {
            let r = e.exchange(engine, request).await;
            assert_eq!(r.status, 200, "{engine:?} {request:?}: {}", r.head);
            let echo = json(&r);
            assert_eq!(echo["upstream"], upstream, "{engine:?} {request:?}");
            let want: Vec<&str> = forwarded_host.into_iter().collect();
            assert_eq!(
                echoed(&echo, "x-forwarded-host"),
                want,
                "{engine:?} {request:?}"
            );
        }
    }
    // HTTP/2: :authority.
    let r = e.http2().get(e.tls_url("/x")).send().await.expect("sent");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let echo: Value = r.json().await.expect("echo");
    assert_eq!(echo["upstream"], "any");
    let port = e.gw.tls.expect("TLS listener").port();
    assert_eq!(
        echoed(&echo, "x-forwarded-host"),
        [format!("localhost:{port}")]
    );
}

#[tokio::test]
async fn requests_without_exactly_one_valid_host_are_400_on_every_path() {
    let up = Upstream::echo().await;
    let e = Engines::spawn(&route("api", "/", &up.url(), OPEN)).await;
    let hosts = [
        "",
        "Host: a.example\r\nHost: a.example\r\n",
        "Host: a.example\r\nHost: b.example\r\n",
        "Host: a.example, b.example\r\n",
        "Host: a.example/x\r\n",
        "Host: user@a.example\r\n",
        "Host: a.example:99999\r\n",
        "Host: \r\n",
    ];
    // A proxied path, and one of the authorization server's.
    for path in ["/x", "/.well-known/oauth-authorization-server"] {
        for engine in GET_ENGINES {
            for host in hosts {
                let r = e
                    .exchange(engine, &format!("GET {path} HTTP/1.1\r\n{host}\r\n"))
                    .await;
                assert_eq!(r.status, 400, "{engine:?} {path} {host:?}: {}", r.head);
                assert_eq!(r.header("content-type"), Some("application/json"));
                let body = json(&r);
                assert_eq!(body["error"], "invalid_request");
                let why = body["error_description"].as_str().expect("a description");
                assert!(why.contains("Host"), "{why}");
            }
            // An absolute-form target needs a Host beside it too (RFC 9112 §3.2).
            let r = e
                .exchange(
                    engine,
                    &format!("GET http://a.example{path} HTTP/1.1\r\n\r\n"),
                )
                .await;
            assert_eq!(r.status, 400, "{engine:?} {path}: {}", r.head);
            // The same requests with one good Host are served.
            let r = e.get(engine, path, "").await;
            assert_eq!(r.status, 200, "{engine:?} {path}: {}", r.head);
        }
    }
    assert_eq!(up.hits(), 2, "only the good requests reached the upstream");
}

// ---------------------------------------------------------------- paths

#[tokio::test]
async fn raw_backslashes_and_semicolons_in_paths_are_400_and_encoded_ones_stay_encoded() {
    let up = Upstream::echo().await;
    let e = Engines::spawn(&format!(
        "{}{}",
        route("open", "/open", &up.url(), OPEN),
        route("admin", "/admin", &up.url(), OPEN),
    ))
    .await;
    let refused = [
        ("/open/..;/admin", "';'"),
        ("/open/a;jsessionid=1", "';'"),
        ("/open;/x", "';'"),
        ("/open/a\\b", "'\\'"),
        ("/open/..\\admin", "'\\'"),
        ("/open\\..\\admin", "'\\'"),
    ];
    for engine in GET_ENGINES {
        for (path, named) in refused {
            let r = e.get(engine, path, "").await;
            assert_eq!(r.status, 400, "{engine:?} {path}: {}", r.head);
            let body = json(&r);
            assert_eq!(body["error"], "invalid_request");
            let why = body["error_description"].as_str().expect("a description");
            assert!(why.contains(named), "{engine:?} {path}: {why}");
        }
    }
    assert_eq!(up.hits(), 0);
    let served = [
        ("/open/a%3Bb", "/open/a%3Bb", None),
        ("/open/..%3b/admin", "/open/..%3B/admin", None),
        ("/open/x?q=a;b", "/open/x", Some("q=a;b")),
    ];
    for engine in GET_ENGINES {
        for (target, path, query) in served {
            let r = e.get(engine, target, "").await;
            assert_eq!(r.status, 200, "{engine:?} {target}: {}", r.head);
            let echo = json(&r);
            assert_eq!(echo["path"], path, "{engine:?} {target}");
            assert_eq!(echo["query"].as_str(), query, "{engine:?} {target}");
        }
    }
}

// ---------------------------------------------------------------- error bodies

#[tokio::test]
async fn upstream_errors_name_the_route_but_never_the_upstream() {
    let slow = Upstream::echo().await;
    let dead = refused_url();
    let e = Engines::spawn(&format!(
        "{}{}",
        route("mail", "/mail", &dead, OPEN),
        route(
            "slow",
            "/slow",
            &slow.url(),
            &format!("{OPEN}\ntimeout = \"300ms\"")
        ),
    ))
    .await;
    let cases = [
        (
            "/mail/x",
            502,
            "bad_gateway",
            "the upstream of route \"mail\" cannot be reached",
            dead.trim_start_matches("http://").to_string(),
        ),
        (
            "/slow",
            504,
            "gateway_timeout",
            "the upstream of route \"slow\" did not answer in time",
            slow.server.addr.to_string(),
        ),
    ];
    for engine in GET_ENGINES {
        for (path, status, code, description, address) in &cases {
            let r = e.get(engine, path, "").await;
            assert_eq!(r.status, *status, "{engine:?} {path}: {}", r.head);
            let body = json(&r);
            assert_eq!(body["error"], *code);
            assert_eq!(body["error_description"], *description, "{engine:?}");
            for leak in [address.as_str(), "127.0.0.1", "http", "@"] {
                assert!(
                    !r.body.contains(leak),
                    "{engine:?} {path}: {leak} in {}",
                    r.body
                );
            }
        }
    }
    // The slow upstream is never released: a stored release would let the next request
    // through early.
    assert_eq!(slow.hits(), 2);
}
