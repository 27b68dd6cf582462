//! Parity of the two engines (issue 12, item 3): one table of cases, each sent through the
//! fast lane (a plain GET on the plain listener) and through the hyper path (the same GET
//! over TLS, over HTTP/2, and a POST with a body on the plain listener), which must give the
//! same answer (status, `error` code, `WWW-Authenticate`, `Retry-After`, `X-Request-Id`, the
//! response's hop-by-hop headers gone) and show the upstream the same request. Then the rules
//! that differ by design, each on every way it applies to: a connect failure is retried only
//! for a body-less request, and only a body can be too large.

use crate::common::engines::{Engine, Engines, ALL_ENGINES};
use crate::common::scripted::{Scripted, Step};
use crate::common::{now, refused_url, remote_verify, route, sample, Introspector, Upstream};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const MAIL_AUD: &str = "https://mail.test";
const OPEN: &str = "auth = \"none\"";

/// One request and what every engine must answer to it.
struct Case {
    name: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// The introspection endpoint answers 500 while this case runs.
    verifier_down: bool,
    status: u16,
    /// The JSON `error` code of an error answer.
    error: Option<&'static str>,
    /// Headers the upstream must see with these values (`None`: must not see at all).
    upstream_sees: &'static [(&'static str, Option<&'static str>)],
}

const fn case(name: &'static str, path: &'static str, status: u16) -> Case {
    Case {
        name,
        path,
        headers: &[],
        verifier_down: false,
        status,
        error: None,
        upstream_sees: &[],
    }
}

const SPOOFED: &[(&str, &str)] = &[
    ("authorization", "Bearer good"),
    ("x-auth-subject", "mallory"),
    ("x-auth-scope", "admin"),
    ("x_auth_subject", "mallory"),
    ("X-Auth-Anything", "forged"),
    ("x-real-ip", "10.6.6.6"),
    ("forwarded", "for=10.6.6.6"),
    ("x_forwarded_for", "10.6.6.6"),
];

const CASES: &[Case] = &[
    // The guard's every outcome.
    Case {
        error: Some("unauthorized"),
        ..case("missing token", "/mail/inbox", 401)
    },
    Case {
        headers: &[("authorization", "Bearer a=b")],
        error: Some("unauthorized"),
        ..case("malformed token", "/mail/inbox", 401)
    },
    Case {
        headers: &[("authorization", "Bearer unknown")],
        error: Some("invalid_token"),
        ..case("inactive token", "/mail/inbox", 401)
    },
    Case {
        headers: &[("authorization", "Bearer other-aud")],
        error: Some("invalid_token"),
        ..case("wrong audience", "/mail/inbox", 401)
    },
    Case {
        headers: &[("authorization", "Bearer no-scope")],
        error: Some("insufficient_scope"),
        ..case("insufficient scope", "/mail/inbox", 403)
    },
    Case {
        headers: &[("authorization", "Bearer fresh")],
        verifier_down: true,
        error: Some("temporarily_unavailable"),
        ..case("verifier down", "/mail/inbox", 503)
    },
    // Identity headers come from the verified principal, and only from it.
    Case {
        headers: &[("authorization", "Bearer good")],
        upstream_sees: &[
            ("x-auth-subject", Some("alice")),
            ("x-auth-client-id", Some("mail-app")),
            ("x-auth-scope", Some("email")),
        ],
        ..case("identity headers", "/mail/inbox", 200)
    },
    Case {
        headers: SPOOFED,
        upstream_sees: &[
            ("x-auth-subject", Some("alice")),
            ("x-auth-scope", Some("email")),
            ("x_auth_subject", None),
            ("x-auth-anything", None),
            ("x-real-ip", None),
            ("forwarded", None),
            ("x_forwarded_for", None),
        ],
        ..case("spoofed headers", "/mail/inbox", 200)
    },
    Case {
        headers: &[("x-auth-subject", "mallory"), ("x-auth-client-id", "evil")],
        upstream_sees: &[("x-auth-subject", None), ("x-auth-client-id", None)],
        ..case("spoofed headers on an open route", "/open/x", 200)
    },
    // X-Forwarded-* and X-Request-Id.
    Case {
        headers: &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.test"),
        ],
        upstream_sees: &[("x-forwarded-for", Some("203.0.113.9, 127.0.0.1"))],
        ..case("x-forwarded-*", "/open/x?q=1", 200)
    },
    Case {
        headers: &[("x-request-id", "parity-id-1")],
        upstream_sees: &[("x-request-id", Some("parity-id-1"))],
        ..case("a sane x-request-id", "/open/x", 200)
    },
    Case {
        headers: &[("x-request-id", "has space")],
        ..case("an insane x-request-id", "/open/x", 200)
    },
    // The gateway's own error statuses.
    Case {
        error: Some("not_found"),
        ..case("no route", "/nowhere", 404)
    },
    Case {
        error: Some("invalid_request"),
        ..case("bad path", "/open/a;b", 400)
    },
    Case {
        headers: &[("x-request-id", "parity-id-2")],
        error: Some("bad_gateway"),
        ..case("upstream refuses connections", "/gone/x", 502)
    },
    Case {
        error: Some("gateway_timeout"),
        ..case("upstream too slow", "/slow", 504)
    },
    // An answer the framing rules refuse.
    Case {
        error: Some("bad_gateway"),
        ..case("length beside transfer-encoding", "/framing/cl-te", 502)
    },
    Case {
        error: Some("bad_gateway"),
        ..case("transfer-encoding in HTTP/1.0", "/framing/te10", 502)
    },
];

/// What a client saw, with what differs by the way it came (the listener's scheme and
/// authority, a random request id) replaced by placeholders.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    error: Option<String>,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    request_id: Option<String>,
    /// Hop-by-hop headers of the echo upstream's answer that reached the client.
    hop_by_hop: Vec<String>,
    /// What the upstream saw: path, query and the headers the gateway decides on.
    upstream: Option<BTreeMap<String, Value>>,
}

/// The headers the gateway writes, removes or passes; the rest is the client library's.
const WATCHED: &[&str] = &[
    "x-auth-subject",
    "x-auth-client-id",
    "x-auth-scope",
    "x-auth-anything",
    "x_auth_subject",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x_forwarded_for",
    "x-real-ip",
    "forwarded",
    "x-request-id",
    "authorization",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

fn framing_script(path: &str, _served: usize) -> Vec<Step> {
    let answer: &'static [u8] = match path {
        "/framing/cl-te" => {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        }
        "/framing/te10" => b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    };
    vec![Step::Write(answer)]
}

struct Setup {
    introspector: Introspector,
    up: Upstream,
    _scripted: Scripted,
    e: Engines,
}

impl Setup {
    async fn new(extra_routes: &str) -> Setup {
        let introspector = Introspector::spawn(Duration::ZERO).await;
        let token = |scope: &str, aud: &str| {
            json!({"active": true, "sub": "alice", "username": "alice", "client_id": "mail-app",
                "scope": scope, "exp": now() + 3600, "token_type": "Bearer", "aud": aud})
        };
        introspector.insert("good", token("email", MAIL_AUD));
        introspector.insert("fresh", token("email", MAIL_AUD));
        introspector.insert("other-aud", token("email", "https://other.test"));
        introspector.insert("no-scope", token("profile", MAIL_AUD));
        let up = Upstream::echo().await;
        let scripted = Scripted::spawn(framing_script).await;
        let mail = format!("scopes = [\"email\"]\naudience = \"{MAIL_AUD}\"");
        let e = Engines::spawn(&format!(
            "{}{}{}{}{}{}{}",
            remote_verify(&introspector, ""),
            route("mail", "/mail", &up.url(), &mail),
            route(
                "open",
                "/open",
                &up.url(),
                &format!("{OPEN}\nstrip_prefix = true")
            ),
            route("gone", "/gone", &refused_url(), OPEN),
            route(
                "slow",
                "/slow",
                &up.url(),
                &format!("{OPEN}\ntimeout = \"300ms\"")
            ),
            route("framing", "/framing", &scripted.url, OPEN),
            extra_routes,
        ))
        .await;
        Setup {
            introspector,
            up,
            _scripted: scripted,
            e,
        }
    }

    /// Sends `case` through `engine` and reads what came back.
    async fn answer(&self, engine: Engine, case: &Case) -> Answer {
        let mut request = self.e.request(engine, case.path);
        for (name, value) in case.headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} through {engine:?}: {e}", case.name));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("a text header").to_string())
        };
        let (status, www_authenticate, retry_after) = (
            response.status().as_u16(),
            header("www-authenticate"),
            header("retry-after"),
        );
        let request_id = header("x-request-id").map(placeholder_id);
        let hop_by_hop = ["connection", "keep-alive", "x-upstream-hop"]
            .into_iter()
            .filter(|h| response.headers().contains_key(*h))
            .map(str::to_string)
            .collect();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let error = body["error"].as_str().map(str::to_string);
        let upstream = (body.get("upstream").is_some()).then(|| self.upstream_view(engine, &body));
        Answer {
            status,
            error,
            www_authenticate,
            retry_after,
            request_id,
            hop_by_hop,
            upstream,
        }
    }

    /// The watched part of the echo upstream's view, engine-specific values replaced.
    fn upstream_view(&self, engine: Engine, echo: &Value) -> BTreeMap<String, Value> {
        let (proto, authority) = match engine {
            Engine::FastLane | Engine::HyperPost => ("http", self.e.gw.public.to_string()),
            Engine::HyperTls | Engine::Http2 => {
                let port = self.e.gw.tls.expect("TLS listener").port();
                ("https", format!("localhost:{port}"))
            }
            Engine::FastLaneTls => {
                let port = self.e.tls_lane.tls.expect("TLS listener").port();
                ("https", format!("localhost:{port}"))
            }
        };
        let mut view = BTreeMap::new();
        view.insert("path".to_string(), echo["path"].clone());
        view.insert("query".to_string(), echo["query"].clone());
        for name in WATCHED {
            let mut values = echo["headers"][*name].clone();
            if let Some(list) = values.as_array_mut() {
                for v in list.iter_mut() {
                    let text = v.as_str().unwrap_or_default();
                    *v = match *name {
                        "x-forwarded-proto" if text == proto => json!("<proto>"),
                        "x-forwarded-host" if text == authority => json!("<authority>"),
                        "x-request-id" => json!(placeholder_id(text.to_string())),
                        _ => v.clone(),
                    };
                }
            }
            view.insert(name.to_string(), values);
        }
        view
    }
}

/// A request id the gateway made (32 hex digits) is `<new>`; the caller's stays as it is.
fn placeholder_id(id: String) -> String {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        "<new>".to_string()
    } else {
        id
    }
}

/// Checks `answer` (from the fast lane) against the table's expectations.
fn check_expected(case: &Case, answer: &Answer) -> Vec<String> {
    let mut wrong = Vec::new();
    let name = case.name;
    if answer.status != case.status {
        wrong.push(format!(
            "{name}: status {} (want {})",
            answer.status, case.status
        ));
    }
    if answer.error.as_deref() != case.error {
        wrong.push(format!(
            "{name}: error {:?} (want {:?})",
            answer.error, case.error
        ));
    }
    let challenged = matches!(case.status, 401 | 403);
    match &answer.www_authenticate {
        Some(c) if challenged && c.starts_with("Bearer ") => {}
        None if !challenged => {}
        other => wrong.push(format!("{name}: WWW-Authenticate {other:?}")),
    }
    if (case.status == 503) != answer.retry_after.is_some() {
        wrong.push(format!("{name}: Retry-After {:?}", answer.retry_after));
    }
    if !answer.hop_by_hop.is_empty() {
        wrong.push(format!(
            "{name}: hop-by-hop {:?} reached the client",
            answer.hop_by_hop
        ));
    }
    let sent_id = case.headers.iter().find(|(n, _)| *n == "x-request-id");
    let want_id = match sent_id {
        Some((_, id)) if !id.contains(' ') => id.to_string(),
        _ => "<new>".to_string(),
    };
    if answer.request_id.as_deref() != Some(want_id.as_str()) {
        wrong.push(format!("{name}: X-Request-Id {:?}", answer.request_id));
    }
    match (&answer.upstream, case.status) {
        (Some(view), 200) => {
            for (header, want) in case.upstream_sees {
                let got = view[*header].as_array().map(|vs| vs.as_slice());
                let ok = match (want, got) {
                    (None, None) => true,
                    (Some(want), Some([one])) => one == want,
                    _ => false,
                };
                if !ok {
                    wrong.push(format!(
                        "{name}: upstream saw {header}: {got:?} (want {want:?})"
                    ));
                }
            }
            for (header, want) in [
                ("x-forwarded-proto", "<proto>"),
                ("x-forwarded-host", "<authority>"),
            ] {
                if view[header] != json!([want]) {
                    wrong.push(format!("{name}: upstream saw {header}: {}", view[header]));
                }
            }
        }
        (None, 200) => wrong.push(format!("{name}: no upstream echo")),
        (Some(_), _) => wrong.push(format!("{name}: an error answer came from the upstream")),
        (None, _) => {}
    }
    wrong
}

#[tokio::test]
async fn every_case_gets_the_same_answer_and_the_same_upstream_view_on_every_engine() {
    let s = Setup::new("").await;
    let mut wrong = Vec::new();
    for case in CASES {
        s.introspector.fail(case.verifier_down);
        let fast = s.answer(Engine::FastLane, case).await;
        wrong.extend(check_expected(case, &fast));
        for engine in ALL_ENGINES.into_iter().skip(1) {
            let other = s.answer(engine, case).await;
            if other != fast {
                wrong.push(format!(
                    "{}: {engine:?} differs from the fast lane:\n  fast lane: {fast:?}\n  {engine:?}: {other:?}",
                    case.name
                ));
            }
        }
    }
    s.introspector.fail(false);
    // Each case was counted once per engine, under its route (`_none` without one).
    let metrics = s.e.gw.metrics().await;
    let engines = ALL_ENGINES.len() as f64;
    let mut want: BTreeMap<(&str, u16), f64> = BTreeMap::new();
    for case in CASES {
        // A path that cannot be routed (404, 400) counts under `_none`.
        let route = match case.status {
            400 | 404 => "_none",
            _ => case.path.split('/').nth(1).unwrap_or_default(),
        };
        *want.entry((route, case.status)).or_default() += engines;
    }
    for ((route, status), count) in want {
        let status = status.to_string();
        let labels = [("route", route), ("status", status.as_str())];
        let got = sample(&metrics, "tollgate_requests_total", &labels);
        if got != Some(count) {
            wrong.push(format!(
                "tollgate_requests_total{labels:?}: {got:?}, want {count}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Only the slow requests are still waiting at the upstream; let them go.
    for _ in 0..ALL_ENGINES.len() {
        s.up.release();
    }
}

#[tokio::test]
async fn a_connect_failure_is_retried_on_another_target_for_body_less_requests_only() {
    // One route per engine, each's first target refusing connections: its first request
    // meets the refusal whichever engine sends it.
    let refused = refused_url();
    let up = Upstream::echo().await;
    let routes: String = ALL_ENGINES
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let upstreams = format!("upstream = [\"{refused}\", \"{}\"]", up.url());
            format!("[[routes]]\nname = \"retry-{i}\"\npath_prefix = \"/retry-{i}\"\n{upstreams}\n{OPEN}\n\n")
        })
        .collect();
    let e = Engines::spawn(&routes).await;
    for (i, engine) in ALL_ENGINES.into_iter().enumerate() {
        let response = e
            .request(engine, &format!("/retry-{i}/x"))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{engine:?}: {err}"));
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match engine {
            // Sent again to the second target.
            Engine::FastLane | Engine::FastLaneTls | Engine::HyperTls | Engine::Http2 => {
                assert_eq!(status, 200, "{engine:?}: {body}");
                assert_eq!(body["path"], format!("/retry-{i}/x"), "{engine:?}");
            }
            // A body is not kept for a second try.
            Engine::HyperPost => {
                assert_eq!(status, 502, "{engine:?}: {body}");
                assert_eq!(body["error"], "bad_gateway", "{engine:?}");
            }
        }
    }
    assert_eq!(
        up.hits(),
        3,
        "each body-less request reached the live target once"
    );
}

#[tokio::test]
async fn only_a_body_can_be_too_large_and_every_hyper_way_refuses_it_alike() {
    let up = Upstream::echo().await;
    let e = Engines::spawn(&route(
        "small",
        "/small",
        &up.url(),
        &format!("{OPEN}\nmax_request_body = \"2B\""),
    ))
    .await;
    // A body-less request has nothing to refuse, on any engine.
    for engine in [Engine::FastLane, Engine::HyperTls, Engine::Http2] {
        let r = e.request(engine, "/small/x").send().await.expect("sent");
        assert_eq!(r.status(), 200, "{engine:?}");
    }
    // The same 4-byte body over HTTP/1.1 (plain and TLS) and HTTP/2.
    for way in [Engine::HyperPost, Engine::HyperTls, Engine::Http2] {
        let r = e.post(way, "/small/x").send().await.expect("sent");
        assert_eq!(r.status(), 413, "{way:?}");
        let body: Value = r.json().await.expect("JSON error");
        assert_eq!(body["error"], "request_too_large", "{way:?}");
    }
    assert_eq!(up.hits(), 3, "no refused body reached the upstream");
}
