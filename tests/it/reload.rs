//! Reload (DESIGN.md "Reload"): each part that reloads, a bad file that changes nothing,
//! keys that need a restart, a request in flight across a reload, and a real SIGHUP to the
//! binary. The reload under load is in `reload/under_load.rs`.
//!
//! In-process tests rewrite the gateway's `gateway.toml` and call `Running::reload`, which
//! is what the SIGHUP handler calls.

mod under_load;

use crate::common::oauth::{write_users, PASSWORD};
use crate::common::{
    self, count, remote_verify, route, sample, Introspector, TestGateway, Upstream,
};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use tollgate::app::{Applied, CacheFate, ReloadError};

const SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n";
const SECRET_ONE: &str = "secret-of-client-one";
const SECRET_TWO: &str = "secret-of-client-two";

/// Writes `text` as the running gateway's `gateway.toml` and reloads it.
async fn reload(gw: &TestGateway, text: &str) -> Result<Applied, ReloadError> {
    std::fs::write(gw.dir.path().join("gateway.toml"), text).expect("write config");
    gw.running
        .as_ref()
        .expect("the gateway runs")
        .reload()
        .await
}

async fn reload_ok(gw: &TestGateway, text: &str) -> Applied {
    reload(gw, text)
        .await
        .unwrap_or_else(|e| panic!("reload refused:\n{e}\n---\n{text}"))
}

/// The refusal's text, as the log shows it.
async fn reload_refused(gw: &TestGateway, text: &str) -> String {
    match reload(gw, text).await {
        Ok(applied) => panic!("reload applied ({applied:?}):\n{text}"),
        Err(e) => tollgate::error::error_chain(&e).to_string(),
    }
}

async fn get(gw: &TestGateway, path: &str) -> (StatusCode, Value) {
    let r = common::client()
        .get(gw.url(path))
        .send()
        .await
        .expect("answered");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn reloads(gw: &TestGateway, result: &str) -> u64 {
    count(
        &gw.metrics().await,
        "tollgate_config_reloads_total",
        &[("result", result)],
    )
}

/// `[oauth]` with a memory store, the scopes, and `extra` keys.
fn oauth(scopes: &[&str], extra: &str) -> String {
    let scopes: String = scopes
        .iter()
        .map(|s| format!("\"{s}\" = \"Consent text of {s}\"\n"))
        .collect();
    format!("[oauth]\nstore = \"memory\"\n{extra}\n[oauth.scopes]\n{scopes}\n")
}

/// A confidential client allowed `grants` and `scopes`.
fn client(id: &str, secret: &str, grants: &[&str], scopes: &[&str]) -> String {
    format!(
        "[[clients]]\nid = \"{id}\"\nsecret_hash = \"{}\"\ngrant_types = {grants:?}\nscopes = {scopes:?}\n\n",
        tollgate::secrets::fast_secret_hash(secret)
    )
}

async fn token_request(
    gw: &TestGateway,
    (id, secret): (&str, &str),
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = common::client()
        .post(gw.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .expect("answered");
    let status = r.status();
    (status, r.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn reloaded_routes_add_remove_and_change_upstreams() {
    let (one, two) = (Upstream::named("one").await, Upstream::named("two").await);
    let before = format!(
        "{SERVER}{}{}",
        route(
            "a",
            "/a",
            &one.url(),
            "auth = \"none\"\nstrip_prefix = true"
        ),
        route("gone", "/gone", &one.url(), "auth = \"none\""),
    );
    let gw = TestGateway::spawn(&before).await;
    assert_eq!(get(&gw, "/a/x").await.1["upstream"], "one");
    assert_eq!(get(&gw, "/gone").await.0, StatusCode::OK);

    let after = format!(
        "{SERVER}{}{}",
        route(
            "a",
            "/a",
            &two.url(),
            "auth = \"none\"\nstrip_prefix = true"
        ),
        route("new", "/new", &one.url(), "auth = \"none\""),
    );
    reload_ok(&gw, &after).await;
    let (status, echo) = get(&gw, "/a/x").await;
    assert_eq!(
        (status, echo["upstream"].as_str()),
        (StatusCode::OK, Some("two"))
    );
    assert_eq!(echo["path"], "/x", "strip_prefix still applies");
    assert_eq!(get(&gw, "/new/y").await.1["upstream"], "one");
    assert_eq!(get(&gw, "/gone").await.0, StatusCode::NOT_FOUND);
    assert_eq!(reloads(&gw, "success").await, 1);
}

#[tokio::test]
async fn reloaded_clients_a_new_one_gets_tokens_and_a_removed_one_is_invalid() {
    let cc = ["client_credentials"];
    let config = |clients: &str| format!("{SERVER}{}{clients}", oauth(&["email"], ""));
    let gw = TestGateway::spawn(&config(&client("one", SECRET_ONE, &cc, &["email"]))).await;
    let form = [("grant_type", "client_credentials"), ("scope", "email")];
    assert_eq!(
        token_request(&gw, ("one", SECRET_ONE), &form).await.0,
        StatusCode::OK
    );
    let (status, answer) = token_request(&gw, ("two", SECRET_TWO), &form).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );

    reload_ok(&gw, &config(&client("two", SECRET_TWO, &cc, &["email"]))).await;
    let (status, answer) = token_request(&gw, ("two", SECRET_TWO), &form).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["access_token"].is_string());
    let (status, answer) = token_request(&gw, ("one", SECRET_ONE), &form).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

#[tokio::test]
async fn reloaded_scopes_can_be_granted_and_advertised() {
    let cc = ["client_credentials"];
    let before = format!(
        "{SERVER}{}{}",
        oauth(&["email"], ""),
        client("one", SECRET_ONE, &cc, &["email"])
    );
    let gw = TestGateway::spawn(&before).await;
    let form = [("grant_type", "client_credentials"), ("scope", "files")];
    let (status, answer) = token_request(&gw, ("one", SECRET_ONE), &form).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope"))
    );

    let after = format!(
        "{SERVER}{}{}",
        oauth(&["email", "files"], ""),
        client("one", SECRET_ONE, &cc, &["email", "files"])
    );
    reload_ok(&gw, &after).await;
    let (status, answer) = token_request(&gw, ("one", SECRET_ONE), &form).await;
    // The granted scope is the one asked for (so the answer may leave it out).
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["access_token"].is_string(), "{answer}");
    let metadata = get(&gw, "/.well-known/oauth-authorization-server").await.1;
    let scopes = metadata["scopes_supported"]
        .as_array()
        .expect("scopes listed");
    assert!(scopes.iter().any(|s| s == "files"), "{metadata}");
}

/// The users file is read again on reload, here a different file than before (a file
/// changed in place is also picked up between reloads, by its modification time).
#[tokio::test]
async fn reloaded_users_file_lets_a_new_user_log_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_users(&dir.path().join("users.toml"), &["alice"]);
    write_users(&dir.path().join("more-users.toml"), &["alice", "bob"]);
    let config = |file: &str| {
        format!(
            "{SERVER}{}[users]\nfile = \"{file}\"\n\n{}",
            oauth(&["email"], "allow_password_grant = true"),
            client("one", SECRET_ONE, &["password"], &["email"])
        )
    };
    let gw = TestGateway::spawn_in(dir, &config("users.toml")).await;
    let login = |user: &'static str| {
        [
            ("grant_type", "password"),
            ("username", user),
            ("password", PASSWORD),
            ("scope", "email"),
        ]
    };
    assert_eq!(
        token_request(&gw, ("one", SECRET_ONE), &login("alice"))
            .await
            .0,
        StatusCode::OK
    );
    let (status, answer) = token_request(&gw, ("one", SECRET_ONE), &login("bob")).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    reload_ok(&gw, &config("more-users.toml")).await;
    let (status, answer) = token_request(&gw, ("one", SECRET_ONE), &login("bob")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// `[verify]` unchanged: cached verdicts stay (the introspector is not asked again).
/// Changed: a new verifier with an empty cache, which asks again.
#[tokio::test]
async fn reload_keeps_the_verify_cache_unless_verify_settings_change() {
    let up = Upstream::echo().await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active("tok", "alice", "email");
    let config = |verify_extra: &str| {
        format!(
            "{SERVER}{}{}",
            remote_verify(&introspector, verify_extra),
            route("api", "/api", &up.url(), "scopes = [\"email\"]")
        )
    };
    let gw = TestGateway::spawn(&config("cache_ttl = \"5m\"")).await;
    let call = || async {
        common::client()
            .get(gw.url("/api/x"))
            .bearer_auth("tok")
            .send()
            .await
            .expect("answered")
            .status()
    };
    assert_eq!(call().await, StatusCode::OK);
    assert_eq!(introspector.calls(), 1);

    let applied = reload_ok(&gw, &config("cache_ttl = \"5m\"")).await;
    assert_eq!(applied.cache, CacheFate::Kept);
    assert_eq!(call().await, StatusCode::OK);
    assert_eq!(introspector.calls(), 1, "the cached verdict was kept");

    let applied = reload_ok(&gw, &config("cache_ttl = \"4m\"")).await;
    assert_eq!(applied.cache, CacheFate::Rebuilt);
    assert_eq!(call().await, StatusCode::OK);
    assert_eq!(introspector.calls(), 2, "a new cache asks again");
}

#[tokio::test]
async fn reloaded_limits_apply_to_later_requests() {
    let up = Upstream::echo().await;
    let config = |limit: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\nmax_request_body = \"{limit}\"\n\n{}",
            route("up", "/up", &up.url(), "auth = \"none\"")
        )
    };
    let gw = TestGateway::spawn(&config("1MiB")).await;
    let post = || async {
        common::client()
            .post(gw.url("/up/x"))
            .body(vec![b'x'; 2048])
            .send()
            .await
            .expect("answered")
            .status()
    };
    assert_eq!(post().await, StatusCode::OK);
    reload_ok(&gw, &config("1KiB")).await;
    assert_eq!(post().await, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Syntax error, unknown key, missing users file: each changes nothing, names the file,
/// line, column and key, and counts one failure; both results are exported from start.
#[tokio::test]
async fn a_bad_file_changes_nothing_and_is_counted() {
    let up = Upstream::echo().await;
    let good = format!(
        "{SERVER}{}",
        route("open", "/open", &up.url(), "auth = \"none\"")
    );
    let gw = TestGateway::spawn(&good).await;
    let metrics = gw.metrics().await;
    for result in ["success", "failure"] {
        let labels = [("result", result)];
        assert_eq!(
            sample(&metrics, "tollgate_config_reloads_total", &labels),
            Some(0.0),
            "{result} at zero from start"
        );
    }
    let file = gw.dir.path().join("gateway.toml").display().to_string();

    let why = reload_refused(&gw, &format!("{good}[verify\nsource = 1\n")).await;
    assert!(
        why.starts_with(&format!("{file}:")) && why.contains("not valid TOML"),
        "{why}"
    );
    let unknown = format!(
        "{SERVER}{}",
        route(
            "open",
            "/elsewhere",
            &up.url(),
            "auth = \"none\"\ncolour = \"blue\""
        )
    );
    let why = reload_refused(&gw, &unknown).await;
    let at = line_of(&unknown, "colour");
    assert!(
        why.contains(&format!(
            "{file}:{at}:1: [[routes]] \"open\".colour: unknown key"
        )),
        "{why}"
    );
    let why = reload_refused(&gw, &format!("{good}[users]\nfile = \"missing.toml\"\n")).await;
    assert!(
        why.contains("[users].file") && why.contains("missing.toml"),
        "{why}"
    );

    assert_eq!(
        get(&gw, "/open").await.0,
        StatusCode::OK,
        "the old routes still serve"
    );
    assert_eq!(get(&gw, "/elsewhere").await.0, StatusCode::NOT_FOUND);
    assert_eq!(reloads(&gw, "failure").await, 3);
    assert_eq!(reloads(&gw, "success").await, 0);
    reload_ok(&gw, &good).await;
    assert_eq!(reloads(&gw, "success").await, 1);
}

/// Listeners and the store stay as start-up made them; the rest of the file applies.
#[tokio::test]
async fn keys_that_need_a_restart_are_reported_and_left_alone() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&format!("{SERVER}{}", oauth(&["email"], ""))).await;
    let moved = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\ninternal_listen = \"127.0.0.1:0\"\n\n{}{}",
        oauth(&["email"], "").replace("\"memory\"", "\"sqlite:other.db\""),
        route("open", "/open", &up.url(), "auth = \"none\"")
    );
    let applied = reload_ok(&gw, &moved).await;
    assert_eq!(
        applied.needs_restart, 2,
        "[server].listen and [oauth].store"
    );
    assert_eq!(
        get(&gw, "/open").await.0,
        StatusCode::OK,
        "on the old address"
    );
    assert!(
        !gw.dir.path().join("other.db").exists(),
        "the store was not opened"
    );
}

/// A request in flight finishes on the config it started with, even when a reload removes
/// its route; later requests see the new config.
#[tokio::test]
async fn a_request_in_flight_finishes_after_a_reload_removes_its_route() {
    let up = Upstream::echo().await;
    let with_route = format!(
        "{SERVER}{}{}",
        route(
            "slow",
            "/slowroute",
            &up.url(),
            "auth = \"none\"\nstrip_prefix = true\ntimeout = \"20s\""
        ),
        route("other", "/other", &up.url(), "auth = \"none\""),
    );
    let gw = TestGateway::spawn(&with_route).await;
    let in_flight = tokio::spawn(common::client().get(gw.url("/slowroute/slow")).send());
    up.wait_for_hits(1).await;

    let without = format!(
        "{SERVER}{}",
        route("other", "/other", &up.url(), "auth = \"none\"")
    );
    reload_ok(&gw, &without).await;
    assert_eq!(get(&gw, "/slowroute/slow").await.0, StatusCode::NOT_FOUND);
    assert!(!in_flight.is_finished());
    up.release();
    let response = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the request finishes")
        .expect("request task")
        .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let echo: Value = response.json().await.expect("echo");
    assert_eq!(echo["path"], "/slow");
}

/// New certificate files under the same names, `gateway.toml` unchanged: new handshakes get
/// the new certificate. A certificate that does not load keeps the previous one.
#[tokio::test]
async fn reload_rereads_the_certificate_even_when_gateway_toml_is_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = under_load::write_cert(dir.path(), "gw");
    let text = format!(
        "{SERVER}\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"gw.crt\"\nkey = \"gw.key\"\n\n"
    );
    let gw = TestGateway::spawn_in(dir, &text).await;
    let tls = gw.tls.expect("TLS listener");
    let roots = |pems: &[&str]| pems.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(
        under_load::served_cert(tls, &roots(&[&first])).await,
        under_load::der(&first)
    );

    let second = under_load::write_cert(gw.dir.path(), "gw");
    reload_ok(&gw, &text).await;
    let both = roots(&[&first, &second]);
    assert_eq!(
        under_load::served_cert(tls, &both).await,
        under_load::der(&second)
    );

    std::fs::write(gw.dir.path().join("gw.crt"), "not a certificate").expect("write");
    let why = reload_refused(&gw, &text).await;
    assert!(why.contains("[server.tls].cert"), "{why}");
    assert_eq!(
        under_load::served_cert(tls, &both).await,
        under_load::der(&second)
    );
}

/// The real thing: `kill -HUP` to `tollgate run` applies a good file, refuses a bad one
/// with the file, line, column and key in the log, and warns of keys that need a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    use crate::cli::{free_addrs, valid_config, write, Running};
    let up = Upstream::echo().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let [listen, internal] = free_addrs();
    let good = valid_config(listen, internal, &up.url());
    let path = write(dir.path(), "gateway.toml", &good);
    let mut running = Running::start(&path);
    tokio::task::block_in_place(|| {
        running.wait_until_listening(listen);
        running.wait_until_listening(internal);
    });
    let metrics = || async {
        common::client()
            .get(format!("http://{internal}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let reloads =
        |text: &str, result| count(text, "tollgate_config_reloads_total", &[("result", result)]);
    let text = metrics().await;
    assert_eq!(
        sample(
            &text,
            "tollgate_config_reloads_total",
            &[("result", "success")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "tollgate_config_reloads_total",
            &[("result", "failure")]
        ),
        Some(0.0)
    );
    let status = |path: &'static str| async move {
        common::client()
            .get(format!("http://{listen}{path}"))
            .send()
            .await
            .expect("answered")
            .status()
    };
    assert_eq!(status("/added").await, StatusCode::NOT_FOUND);

    let added = good.replace("/files", "/added");
    write(dir.path(), "gateway.toml", &added);
    running.signal("HUP");
    wait_for(&metrics, |m| reloads(m, "success") == 1, &running).await;
    assert_eq!(status("/added").await, StatusCode::OK);

    let bad = format!("{added}\n[verify]\nsoruce = \"local\"\n");
    write(dir.path(), "gateway.toml", &bad);
    running.signal("HUP");
    wait_for(&metrics, |m| reloads(m, "failure") == 1, &running).await;
    assert_eq!(
        status("/added").await,
        StatusCode::OK,
        "the running config stays"
    );
    let file = path.display();
    let stderr = running.stderr();
    let at = line_of(&bad, "soruce");
    assert!(
        stderr.contains(&format!("{file}:{at}:1: [verify].soruce: unknown key")),
        "{stderr}"
    );

    let [elsewhere] = free_addrs();
    let moved = added.replace(&listen.to_string(), &elsewhere.to_string());
    write(dir.path(), "gateway.toml", &moved);
    running.signal("HUP");
    wait_for(&metrics, |m| reloads(m, "success") == 2, &running).await;
    assert_eq!(
        status("/added").await,
        StatusCode::OK,
        "still on the old address"
    );
    let stderr = running.stderr();
    assert!(
        stderr.contains(&format!(
            "{file}:2:1: [server].listen: differs from the running {listen}"
        )),
        "{stderr}"
    );
}

/// Polls `/metrics` (at most 10 s) until `done` holds.
async fn wait_for<F, Fut>(metrics: &F, done: impl Fn(&str) -> bool, running: &crate::cli::Running)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if done(&metrics().await) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no reload within 10 s:\n{}",
            running.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The 1-based line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix}"))
        + 1
}

/// `max_connections` resizes without closing anything: a higher limit serves a connection
/// waiting in the backlog at once; a lower one serves no new connection until enough close.
#[tokio::test]
async fn reloaded_max_connections_resizes_without_closing_connections() {
    use tokio::io::AsyncWriteExt;
    const GET: &str = "GET /up/x HTTP/1.1\r\nHost: gw\r\n\r\n";
    let up = Upstream::echo().await;
    let config = |max: u32| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\nmax_connections = {max}\n\n{}",
            route("up", "/up", &up.url(), "auth = \"none\"")
        )
    };
    let gw = TestGateway::spawn(&config(1)).await;
    let send = || async {
        let mut stream = tokio::net::TcpStream::connect(gw.public)
            .await
            .expect("connect");
        stream.write_all(GET.as_bytes()).await.expect("write");
        stream
    };
    let mut a = send().await;
    served(&mut a).await;
    let mut b = send().await;
    waits(&mut b).await;
    reload_ok(&gw, &config(2)).await;
    served(&mut b).await;

    reload_ok(&gw, &config(1)).await;
    let mut c = send().await;
    waits(&mut c).await;
    drop(a);
    waits(&mut c).await;
    drop(b);
    served(&mut c).await;
}

/// No response on `stream` within 300 ms.
async fn waits(stream: &mut tokio::net::TcpStream) {
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        common::raw::read_response(stream),
    )
    .await;
    assert!(early.is_err(), "served beyond max_connections");
}

/// A 200 on `stream` within 10 s.
async fn served(stream: &mut tokio::net::TcpStream) {
    let response =
        tokio::time::timeout(Duration::from_secs(10), common::raw::read_response(stream))
            .await
            .expect("served");
    assert_eq!(response.status, 200, "{}", response.body);
}

/// Hooks (the access log reopens its file in one) run after every reload, given the new
/// config when it applied and nothing when it was refused.
#[tokio::test]
async fn reload_hooks_run_after_every_reload_good_or_bad() {
    use std::sync::{Arc, Mutex};
    let gw = TestGateway::spawn("").await;
    let seen: Arc<Mutex<Vec<Option<usize>>>> = Arc::default();
    let record = seen.clone();
    gw.running
        .as_ref()
        .expect("the gateway runs")
        .on_reload(Box::new(move |applied| {
            let routes = applied.map(|config| config.routes.len());
            let record = record.clone();
            Box::pin(async move { record.lock().expect("lock").push(routes) })
        }));
    let up = Upstream::echo().await;
    reload_ok(
        &gw,
        &format!("{SERVER}{}", route("a", "/a", &up.url(), "auth = \"none\"")),
    )
    .await;
    reload_refused(&gw, "[server]\nlisten = 1\n").await;
    assert_eq!(*seen.lock().expect("lock"), vec![Some(1), None]);
}

/// A new `keepalive_timeout` applies from the next request on a connection that was open
/// before the reload, on the fast lane and on hyper.
#[tokio::test]
async fn reloaded_keepalive_timeout_applies_to_open_connections_from_their_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::echo().await;
    let config = |keepalive: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\nkeepalive_timeout = \"{keepalive}\"\n\n{}",
            route("up", "/up", &up.url(), "auth = \"none\"")
        )
    };
    let gw = TestGateway::spawn(&config("30s")).await;
    let requests = [
        ("fast lane", "GET /up/x HTTP/1.1\r\nHost: gw\r\n\r\n"),
        (
            "hyper",
            "POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi",
        ),
    ];
    let mut open = Vec::new();
    for (engine, request) in requests {
        let mut stream = tokio::net::TcpStream::connect(gw.public)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        served(&mut stream).await;
        open.push((engine, request, stream));
    }
    reload_ok(&gw, &config("300ms")).await;
    for (engine, request, mut stream) in open {
        stream.write_all(request.as_bytes()).await.expect("write");
        served(&mut stream).await;
        let started = Instant::now();
        let mut rest = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "{engine}: the idle connection was not closed: {read:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{engine}: closed after the old timeout"
        );
    }
}
