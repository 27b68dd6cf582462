//! The access log and `X-Request-Id`: one line per public request, on both engines, with
//! the contract's fields; the "combined" format; `off`; request ids made, passed on or
//! replaced; and no token, secret, password, code or query string in the log or on stderr
//! after a whole OAuth flow.

use crate::common::engines::{Engine, Engines, GET_ENGINES};
use crate::common::oauth::{self, AuthConfig, AuthRequest, Browser, MAIL_APP, PASSWORD, USER};
use crate::common::process::Process;
use crate::common::{self, echoed, remote_verify, route, Introspector, TestGateway, Upstream};
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "tok-access-log-7f3a9c";

/// tollgate on both engines in front of an echo upstream, with one bearer route `mail`
/// (scope `email`) verified by an introspector that knows [`TOKEN`] as alice's, plus `log`
/// as its `[log]` section (empty: the test default, a file).
async fn guarded(log: &str) -> (Engines, Upstream, Introspector) {
    let up = Upstream::echo().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active(TOKEN, "alice", "email");
    let body = format!(
        "{}{}{log}",
        remote_verify(&introspector, ""),
        route(
            "mail",
            "/api/mail",
            &up.url(),
            "auth = \"bearer\"\nscopes = [\"email\"]"
        )
    );
    (Engines::spawn(&body).await, up, introspector)
}

/// The JSON lines of the access log, waiting for `n`.
async fn json_lines(gw: &TestGateway, n: usize) -> Vec<Value> {
    gw.access_log_lines(n)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_guarded_request_is_one_json_line_with_every_field_on_both_engines() {
    let (engines, up, _introspector) = guarded("").await;
    for (i, engine) in GET_ENGINES.into_iter().enumerate() {
        let answer = engines
            .get(
                engine,
                "/api/mail/inbox?access_token=leak&page=2",
                &format!(
                    "Authorization: Bearer {TOKEN}\r\nUser-Agent: it-test/1.0\r\n\
                     X-Request-Id: it-req-{i}\r\n"
                ),
            )
            .await;
        assert_eq!(answer.status, 200, "{engine:?}: {}", answer.head);
        let lines = json_lines(&engines.gw, i + 1).await;
        assert_eq!(lines.len(), i + 1, "{engine:?}: one line per request");
        let line = &lines[i];
        assert_eq!(line["method"], "GET", "{engine:?}: {line}");
        assert_eq!(
            line["path"], "/api/mail/inbox",
            "{engine:?}: no query string"
        );
        assert_eq!(line["status"], 200);
        assert_eq!(line["route"], "mail");
        assert_eq!(line["client_id"], "mail-app");
        assert_eq!(line["sub"], "alice");
        assert_eq!(line["client_addr"], "127.0.0.1");
        assert_eq!(line["request_id"], format!("it-req-{i}"));
        assert_eq!(line["user_agent"], "it-test/1.0");
        assert_eq!(line["upstream"], format!("{}/", up.url()));
        assert_eq!(
            line["bytes_sent"].as_u64(),
            Some(answer.body.len() as u64),
            "{engine:?}: {line}"
        );
        let duration = line["duration_ms"].as_f64().expect("duration_ms");
        let upstream = line["upstream_ms"].as_f64().expect("upstream_ms");
        assert!(duration >= upstream && upstream > 0.0, "{line}");
        let time = line["time"].as_str().expect("time");
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        let text = lines[i].to_string();
        for secret in [TOKEN, "leak", "access_token", "?"] {
            assert!(!text.contains(secret), "{secret} logged: {text}");
        }
    }
}

#[tokio::test]
async fn refusals_and_unrouted_requests_are_logged_too() {
    let (engines, _up, _introspector) = guarded("").await;
    for engine in GET_ENGINES {
        let before = engines.gw.access_log().await.len();
        let refused = engines.get(engine, "/api/mail/x", "").await;
        assert_eq!(refused.status, 401);
        let unrouted = engines.get(engine, "/nowhere?q=1", "").await;
        assert_eq!(unrouted.status, 404);
        let lines = json_lines(&engines.gw, before + 2).await;
        let (refused_line, unrouted_line) = (&lines[before], &lines[before + 1]);
        assert_eq!(refused_line["status"], 401, "{engine:?}");
        assert_eq!(refused_line["route"], "mail");
        assert!(refused_line["sub"].is_null() && refused_line["upstream"].is_null());
        assert!(refused_line["upstream_ms"].is_null());
        assert_eq!(
            refused_line["bytes_sent"].as_u64(),
            Some(refused.body.len() as u64)
        );
        assert_eq!(unrouted_line["status"], 404);
        assert_eq!(unrouted_line["route"], "_none");
        assert_eq!(unrouted_line["path"], "/nowhere");
    }
}

#[tokio::test]
async fn the_combined_format_is_apache_s_with_the_subject_as_user() {
    let (engines, _up, _introspector) =
        guarded("[log]\naccess = \"access.log\"\nformat = \"combined\"\n").await;
    let answer = engines
        .get(
            Engine::FastLane,
            "/api/mail/inbox?code=leak",
            &format!("Authorization: Bearer {TOKEN}\r\nUser-Agent: it \"quoted\"\r\n"),
        )
        .await;
    assert_eq!(answer.status, 200);
    let lines = engines.gw.access_log_lines(1).await;
    let line = &lines[0];
    assert!(line.starts_with("127.0.0.1 - alice ["), "{line}");
    assert!(line.contains(" +0000] "), "{line}");
    let tail = format!(
        "] \"GET /api/mail/inbox HTTP/1.1\" 200 {} \"-\" \"it \\x22quoted\\x22\"",
        answer.body.len()
    );
    assert!(line.ends_with(&tail), "{line}\nwant the end: {tail}");
    assert!(!line.contains("leak") && !line.contains(TOKEN), "{line}");
}

#[tokio::test]
async fn access_off_writes_nothing_and_the_dropped_counter_starts_at_zero() {
    let (engines, _up, _introspector) = guarded("[log]\naccess = \"off\"\n").await;
    let answer = engines
        .get(
            Engine::FastLane,
            "/api/mail/inbox",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
        )
        .await;
    assert_eq!(answer.status, 200);
    // Still echoed: the id does not depend on the log.
    assert!(answer.header("x-request-id").is_some_and(is_generated_id));
    let https = engines
        .http2()
        .get(engines.tls_url("/api/mail/inbox"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("HTTP/2 request");
    assert_eq!(https.status(), 200);
    assert!(engines.gw.access_log().await.is_empty());
    let files: Vec<_> = std::fs::read_dir(engines.gw.dir.path())
        .expect("test dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(!files.iter().any(|f| f == "access.log"), "{files:?}");
    let metrics = engines.gw.metrics().await;
    assert_eq!(
        common::metric(&metrics, "tollgate_access_log_dropped_total"),
        Some(0.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_internal_listener_is_not_logged() {
    let (engines, _up, _introspector) = guarded("").await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = reqwest::get(engines.gw.internal_url(path))
            .await
            .expect("internal");
        assert!(r.status().is_success(), "{path}");
    }
    let answer = engines.get(Engine::FastLane, "/nowhere", "").await;
    assert_eq!(answer.status, 404);
    let lines = engines.gw.access_log_lines(1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("\"/nowhere\""));
}

/// What the client and the upstream saw of one request's id.
struct Seen {
    response: Option<String>,
    upstream: Vec<String>,
}

async fn request_id_through(engines: &Engines, engine: Engine, given: Option<&str>) -> Seen {
    let header = given
        .map(|id| format!("X-Request-Id: {id}\r\n"))
        .unwrap_or_default();
    let answer = engines
        .get(
            engine,
            "/api/mail/id",
            &format!("Authorization: Bearer {TOKEN}\r\n{header}"),
        )
        .await;
    assert_eq!(answer.status, 200, "{engine:?}: {}", answer.head);
    let echo: Value = serde_json::from_str(&answer.body).expect("echo JSON");
    Seen {
        response: answer.header("x-request-id").map(str::to_string),
        upstream: echoed(&echo, "x-request-id"),
    }
}

#[tokio::test]
async fn request_ids_are_made_passed_on_when_sane_and_replaced_when_not_on_both_engines() {
    let (engines, _up, _introspector) = guarded("").await;
    let long = "r".repeat(128);
    let too_long = "r".repeat(129);
    for engine in GET_ENGINES {
        // None sent: a new one, the same upstream, in the response and in the log.
        let made = request_id_through(&engines, engine, None).await;
        let id = made.response.clone().expect("X-Request-Id in the response");
        assert!(is_generated_id(&id), "{engine:?}: {id}");
        assert_eq!(made.upstream, std::slice::from_ref(&id), "{engine:?}");
        let lines = engines.gw.access_log_lines(1).await;
        let last: Value = serde_json::from_str(lines.last().expect("a line")).expect("JSON");
        assert_eq!(last["request_id"], id.as_str(), "{engine:?}");

        for sane in ["abc-123", "Zm9v/YmFy+PQ==~!", long.as_str()] {
            let seen = request_id_through(&engines, engine, Some(sane)).await;
            assert_eq!(seen.response.as_deref(), Some(sane), "{engine:?}");
            assert_eq!(seen.upstream, [sane.to_string()], "{engine:?}");
        }
        for insane in ["has space", too_long.as_str(), "tab\there"] {
            let seen = request_id_through(&engines, engine, Some(insane)).await;
            let id = seen.response.expect("X-Request-Id in the response");
            assert!(is_generated_id(&id), "{engine:?}: {insane:?} → {id}");
            assert_eq!(seen.upstream, [id], "{engine:?}");
        }
    }
    // Two ids made for two requests differ.
    let a = request_id_through(&engines, Engine::FastLane, None).await;
    let b = request_id_through(&engines, Engine::FastLane, None).await;
    assert_ne!(a.response, b.response);
}

/// Over HTTP/2 a response's id is sent as a literal the HPACK table never keeps (each is new):
/// every response on one connection still carries its own id, the one its upstream got, and
/// a caller's id repeated comes back whole each time.
#[tokio::test]
async fn each_response_on_one_http2_connection_carries_its_own_request_id() {
    let (engines, _up, _introspector) = guarded("").await;
    let mut seen = Vec::new();
    for _ in 0..8 {
        let r = engines.bearer(Engine::Http2, "/api/mail/id", TOKEN).await;
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        let id = r.headers()["x-request-id"]
            .to_str()
            .expect("ASCII")
            .to_string();
        let echo: Value = r.json().await.expect("echo JSON");
        assert!(is_generated_id(&id), "{id}");
        assert_eq!(echoed(&echo, "x-request-id"), std::slice::from_ref(&id));
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 8, "one id per response");
    for _ in 0..3 {
        let r = engines
            .request(Engine::Http2, "/api/mail/id")
            .bearer_auth(TOKEN)
            .header("x-request-id", "same-id-again")
            .send()
            .await
            .expect("HTTP/2 request");
        assert_eq!(r.headers()["x-request-id"], "same-id-again");
    }
}

#[tokio::test]
async fn request_ids_on_hyper_s_other_paths_body_http2_and_errors() {
    let (engines, _up, _introspector) = guarded("").await;
    let gw = &engines.gw;
    // A request with a body on the plain listener (handed to hyper).
    let r = common::client()
        .post(gw.url("/api/mail/send"))
        .bearer_auth(TOKEN)
        .header("x-request-id", "post-1")
        .body("hello")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "post-1");
    let echo: Value = r.json().await.expect("echo");
    assert_eq!(echoed(&echo, "x-request-id"), ["post-1"]);
    // HTTP/2 over TLS, with an insane id.
    let r = engines
        .http2()
        .get(engines.tls_url("/api/mail/h2"))
        .bearer_auth(TOKEN)
        .header("x-request-id", "bad id")
        .send()
        .await
        .expect("HTTP/2 GET");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let id = r.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_string();
    assert!(is_generated_id(&id), "{id}");
    let echo: Value = r.json().await.expect("echo");
    assert_eq!(echoed(&echo, "x-request-id"), std::slice::from_ref(&id));
    // The gateway's own answers carry one too, and so do the authorization server's.
    let r = common::client()
        .get(gw.url("/api/mail/x"))
        .send()
        .await
        .expect("401");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    let r = common::client()
        .get(gw.url("/.well-known/oauth-authorization-server"))
        .header("x-request-id", "meta-1")
        .send()
        .await
        .expect("metadata");
    assert_eq!(r.headers()["x-request-id"], "meta-1");
    let lines = json_lines(gw, 4).await;
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["request_id"].as_str().expect("request_id"))
        .collect();
    assert!(ids.contains(&"post-1") && ids.contains(&id.as_str()) && ids.contains(&"meta-1"));
    let post = lines
        .iter()
        .find(|l| l["request_id"] == "post-1")
        .expect("POST line");
    assert_eq!(post["method"], "POST");
    let h2 = lines
        .iter()
        .find(|l| l["request_id"] == id.as_str())
        .expect("h2 line");
    assert_eq!(h2["path"], "/api/mail/h2");
    assert_eq!(h2["sub"], "alice");
    let meta = lines
        .iter()
        .find(|l| l["request_id"] == "meta-1")
        .expect("meta line");
    assert_eq!(meta["route"], "_oauth");
}

#[tokio::test]
async fn lines_are_written_before_a_graceful_stop_returns() {
    let (mut engines, _up, _introspector) = guarded("").await;
    for i in 0..20 {
        let answer = engines
            .get(Engine::FastLane, &format!("/nowhere/{i}"), "")
            .await;
        assert_eq!(answer.status, 404);
    }
    engines.gw.shutdown().await;
    let text = std::fs::read_to_string(engines.gw.dir.path().join("access.log")).expect("log");
    assert_eq!(text.lines().count(), 20, "{text}");
}

// ---------------------------------------------------------------- the binary, end to end

#[tokio::test]
async fn a_whole_oauth_flow_leaves_no_secret_in_the_access_log_or_on_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Upstream::echo().await;
    let mut child = Process::auth_server(dir.path(), &AuthConfig::default(), &up).await;
    let base = child.url("");

    // Authorization code with PKCE, through the login and consent pages.
    let request = AuthRequest::code(MAIL_APP, "email");
    let query = serde_urlencoded::to_string(&request.params).expect("query");
    let browser = Browser::new();
    let page = browser
        .open(&format!("{base}/oauth/authorize?{query}"))
        .await;
    let page = browser.log_in(&page, USER, PASSWORD).await;
    let done = browser.decide(&page, "approve").await;
    let to = done.location().expect("redirect to the client");
    let code = oauth::query_params(&to)["code"].clone();
    let http = common::client();
    let secret = MAIL_APP.secret.expect("confidential");
    let token = |form: Vec<(&'static str, String)>| {
        http.post(format!("{base}/oauth/token"))
            .basic_auth(MAIL_APP.id, Some(secret))
            .form(&form)
            .send()
    };
    let first: Value = token(vec![
        ("grant_type", "authorization_code".into()),
        ("code", code.clone()),
        ("redirect_uri", oauth::REDIRECT_URI.into()),
        ("code_verifier", request.verifier().into()),
    ])
    .await
    .expect("exchange")
    .json()
    .await
    .expect("JSON");
    let access = first["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let refresh = first["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    // The token at work, with a query string that must not be logged.
    let r = http
        .get(format!("{base}/api/mail/inbox?secret_query=1"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("API call");
    assert_eq!(r.status(), 200);
    // Refresh, then revoke the new refresh token (and with it the grant).
    let second: Value = token(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
    ])
    .await
    .expect("refresh")
    .json()
    .await
    .expect("JSON");
    let access2 = second["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let refresh2 = second["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    let r = http
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(MAIL_APP.id, Some(secret))
        .form(&[("token", refresh2.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    // A second authorization (the browser's session skips the login), its code used
    // twice: the replay is refused and the grant revoked (an audit line).
    let request2 = AuthRequest::code(MAIL_APP, "email");
    let query2 = serde_urlencoded::to_string(&request2.params).expect("query");
    let page = browser
        .open(&format!("{base}/oauth/authorize?{query2}"))
        .await;
    let done = browser.decide(&page, "approve").await;
    let to = done.location().expect("redirect to the client");
    let code2 = oauth::query_params(&to)["code"].clone();
    let exchange2 = || {
        token(vec![
            ("grant_type", "authorization_code".into()),
            ("code", code2.clone()),
            ("redirect_uri", oauth::REDIRECT_URI.into()),
            ("code_verifier", request2.verifier().into()),
        ])
    };
    let third: Value = exchange2()
        .await
        .expect("exchange")
        .json()
        .await
        .expect("JSON");
    let access3 = third["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let replay = exchange2().await.expect("replay");
    assert_eq!(replay.status(), 400);
    // A wrong client secret (an audit line naming the client, not the secret).
    let r = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(MAIL_APP.id, Some("not-the-secret-xyz"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("bad client");
    assert_eq!(r.status(), 401);

    // A graceful stop writes the last lines out.
    assert_eq!(child.stop().await, Some(0));
    let log = std::fs::read_to_string(dir.path().join("access.log")).expect("access log");
    let err = child.stderr();

    let secrets = [
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("second access token", access2.as_str()),
        ("second refresh token", refresh2.as_str()),
        ("code", code.as_str()),
        ("second code", code2.as_str()),
        ("third access token", access3.as_str()),
        ("client secret", secret),
        ("wrong client secret", "not-the-secret-xyz"),
        ("password", PASSWORD),
        ("PKCE verifier", request.verifier()),
        ("state", request.state()),
        ("query", "secret_query"),
    ];
    for (what, value) in secrets {
        assert!(
            !log.contains(value),
            "the access log holds the {what}:\n{log}"
        );
        assert!(!err.contains(value), "stderr holds the {what}:\n{err}");
    }
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    // authorize, login page, login post, consent page, consent post, token, API call,
    // refresh, revoke, replay, bad client: at least these, one line each.
    assert!(lines.len() >= 11, "{log}");
    for line in &lines {
        let path = line["path"].as_str().expect("path");
        assert!(!path.contains('?'), "{line}");
    }
    let api = lines
        .iter()
        .find(|l| l["path"] == "/api/mail/inbox")
        .expect("the API call's line");
    assert_eq!(api["sub"], USER);
    assert_eq!(api["client_id"], MAIL_APP.id);
    // Audit lines, and no colour: stderr is a file.
    for event in [
        "event=\"login\"",
        "event=\"token_issued\"",
        "event=\"token_revoked\"",
        "event=\"grant_revoked\"",
        "event=\"invalid_client\"",
    ] {
        assert!(err.contains(event), "no {event} audit line:\n{err}");
    }
    assert!(err.contains("reason=\"code_replay\""), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI colour in a file:\n{err}");
}
