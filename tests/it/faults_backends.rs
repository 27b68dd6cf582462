//! Faults in what tollgate depends on besides upstreams, each with a real process or socket:
//! the remote verifier (500, garbage, slow, silent, refusing), the SQLite file (locked by
//! another connection, made read-only) and the LDAP directory (stopped mid-pool). Each gives
//! the documented status within a bounded time, nothing unverified reaches an upstream, and
//! the next good request after the fault succeeds without restarting tollgate.

use crate::common::engines::{Engine, Engines, GET_ENGINES};
use crate::common::slapd::Slapd;
use crate::common::{
    self, remote_verify, route, Fault, Introspector, TestGateway, Upstream, INTROSPECT_ID,
    INTROSPECT_SECRET,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest any outage answer may take in these tests.
const OUTAGE_BOUND: Duration = Duration::from_secs(5);

/// Asserts a guard answer is the verifier-outage 503 (with `Retry-After`, no challenge), and
/// that it came within [`OUTAGE_BOUND`].
async fn assert_outage(r: reqwest::Response, started: Instant, what: &str) {
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 503, "{what}");
    assert!(elapsed < OUTAGE_BOUND, "{what}: answered after {elapsed:?}");
    assert!(
        r.headers().get("www-authenticate").is_none(),
        "{what}: an outage is not the token's fault"
    );
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..]),
        "{what}"
    );
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"], "temporarily_unavailable", "{what}");
}

// ---------------------------------------------------------------- the remote verifier

/// Answers of a broken introspection endpoint; `timeout = "500ms"` makes `Slow` and `Hang`
/// outages too.
#[tokio::test]
async fn a_broken_verifier_is_503_on_both_engines_and_the_next_good_answer_passes() {
    let introspector = Introspector::spawn(Duration::ZERO).await;
    let up = Upstream::echo().await;
    let gw = Engines::spawn(&format!(
        "{}{}",
        remote_verify(&introspector, "timeout = \"500ms\""),
        route("mail", "/api/mail", &up.url(), "scopes = [\"email\"]"),
    ))
    .await;
    let faults = [
        Fault::Status500,
        Fault::NotJson,
        Fault::WrongShape,
        Fault::Huge,
        Fault::Slow(Duration::from_secs(2)),
        Fault::Hang,
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        // A fresh token per fault: the one before it is cached by now.
        let token = format!("token-{i}");
        introspector.active(&token, "alice", "email");
        introspector.set_fault(fault);
        for engine in GET_ENGINES {
            let started = Instant::now();
            let r = gw.bearer(engine, "/api/mail", &token).await;
            assert_outage(r, started, &format!("{fault:?} via {engine:?}")).await;
        }
        assert_eq!(up.hits(), 2 * i, "{fault:?}: nothing reached the upstream");
        introspector.set_fault(Fault::None);
        for engine in GET_ENGINES {
            let r = gw.bearer(engine, "/api/mail", &token).await;
            assert_eq!(r.status(), 200, "{fault:?} over, via {engine:?}");
        }
    }
    assert_eq!(up.hits(), 2 * faults.len());
    let healthy = common::client()
        .get(gw.gw.internal_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthy.status(), 200);
}

/// A `[verify]` section for an RFC 7662 endpoint at `addr` that may not be listening yet.
fn verify_at(addr: SocketAddr) -> String {
    format!(
        "[verify]\nsource = \"remote\"\nurl = \"http://{addr}/introspect\"\nclient_id = \"{INTROSPECT_ID}\"\n\
         client_secret = \"{INTROSPECT_SECRET}\"\ntimeout = \"500ms\"\n"
    )
}

#[tokio::test]
async fn a_verifier_that_never_answers_or_refuses_is_503_until_it_is_back_on_its_port() {
    // A port this test binds itself later, so not one `refused_url` keeps bound.
    let addr: SocketAddr = common::process::free_addr();
    let up = Upstream::echo().await;
    let gw = Engines::spawn(&format!(
        "{}{}",
        verify_at(addr),
        route("mail", "/api/mail", &up.url(), "")
    ))
    .await;

    // 1. Something accepts connections on the verifier's port and never says a word.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    for engine in GET_ENGINES {
        let started = Instant::now();
        let r = gw.bearer(engine, "/api/mail", "silent").await;
        assert_outage(r, started, &format!("silent verifier via {engine:?}")).await;
    }

    // 2. Nothing listens there: connections are refused.
    silent.abort();
    let _ = silent.await;
    for engine in GET_ENGINES {
        let started = Instant::now();
        let r = gw.bearer(engine, "/api/mail", "refused").await;
        assert_outage(r, started, &format!("refused connection via {engine:?}")).await;
    }
    assert_eq!(up.hits(), 0);

    // 3. The verifier is back: the next request passes, no restart of tollgate needed.
    let introspector = Introspector::spawn_at(addr).await;
    introspector.active("good", "alice", "");
    for engine in GET_ENGINES {
        assert_eq!(gw.bearer(engine, "/api/mail", "good").await.status(), 200);
    }
    assert_eq!(up.hits(), 2);
}

// ---------------------------------------------------------------- the SQLite store

const SERVICE_SECRET: &str = "service-secret";

/// tollgate with a SQLite store at `data/tokens.db`, a `client_credentials` client `service`
/// and a bearer route `/api/mail` verified against that store (the local verifier).
async fn sqlite_gateway(up: &Upstream) -> Engines {
    let secret = tollgate::secrets::fast_secret_hash(SERVICE_SECRET);
    Engines::spawn(&format!(
        "[oauth]\nstore = \"sqlite:data/tokens.db\"\n[oauth.scopes]\nemail = \"Read your email\"\n\
         [[clients]]\nid = \"service\"\nsecret_hash = \"{secret}\"\n\
         grant_types = [\"client_credentials\"]\nscopes = [\"email\"]\n{}",
        route("mail", "/api/mail", &up.url(), "scopes = [\"email\"]"),
    ))
    .await
}

fn db_path(gw: &Engines) -> PathBuf {
    gw.gw.dir.path().join("data/tokens.db")
}

async fn token_request(gw: &Engines) -> reqwest::Response {
    common::client()
        .post(gw.gw.url("/oauth/token"))
        .basic_auth("service", Some(SERVICE_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
}

async fn new_token(gw: &Engines) -> String {
    let r = token_request(gw).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

/// Asserts `/oauth/token` answers the RFC 6749 §5.2 outage error, within [`OUTAGE_BOUND`].
async fn assert_token_endpoint_unavailable(gw: &Engines, what: &str) {
    let started = Instant::now();
    let r = token_request(gw).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status(), 503, "{what}");
    assert!(elapsed < OUTAGE_BOUND, "{what}: answered after {elapsed:?}");
    assert_eq!(
        r.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"5"[..]),
        "{what}"
    );
    assert_eq!(
        r.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body: Value = r.json().await.expect("JSON error body");
    assert_eq!(body["error"], "temporarily_unavailable", "{what}");
}

/// Asserts `token` is let through (fresh from the store, never cached before) on both engines.
async fn assert_guard_passes(gw: &Engines, token: &str, what: &str) {
    for engine in GET_ENGINES {
        let r = gw.bearer(engine, "/api/mail", token).await;
        assert_eq!(r.status(), 200, "{what} via {engine:?}");
    }
}

#[tokio::test]
async fn a_database_locked_by_another_connection_is_503_for_tokens_while_the_guard_reads_on() {
    let up = Upstream::echo().await;
    let gw = sqlite_gateway(&up).await;
    let before = new_token(&gw).await;
    let during = new_token(&gw).await;

    // Another connection (as a backup or admin tool would) holds the write lock.
    let mut other = rusqlite::Connection::open(db_path(&gw)).expect("open the database");
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .expect("take the write lock");
    assert_token_endpoint_unavailable(&gw, "locked").await;
    // WAL: readers see the last commit while a writer waits, so the guard keeps verifying,
    // and is not stuck behind a token request waiting for the lock.
    let (token_answer, guard_answer) = tokio::join!(
        async {
            let started = Instant::now();
            (token_request(&gw).await.status(), started.elapsed())
        },
        async {
            let started = Instant::now();
            let r = gw.bearer(Engine::FastLane, "/api/mail", &during).await;
            (r.status(), started.elapsed())
        },
    );
    assert_eq!(token_answer.0, 503);
    assert_eq!(guard_answer.0, 200);
    assert!(
        guard_answer.1 < Duration::from_secs(1),
        "the guard waited {:?} behind a locked write",
        guard_answer.1
    );
    assert_guard_passes(&gw, &before, "locked").await;

    lock.rollback().expect("release the lock");
    drop(other);
    let after = new_token(&gw).await;
    assert_guard_passes(&gw, &after, "after the lock").await;
}

/// Makes files immutable (`chattr +i`: even root cannot write them, through descriptors
/// already open too) and mutable again when dropped, so a failing test leaves no file that
/// its temporary directory cannot delete.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(paths: &[&Path]) -> Immutable {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.to_path_buf()).collect();
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .args(&paths)
            .output()
            .expect("run chattr (package e2fsprogs)");
        assert!(
            out.status.success(),
            "chattr +i failed ({}): this test needs root (CAP_LINUX_IMMUTABLE) and a file \
             system with immutable files (ext4, xfs, btrfs); .ci/run runs as root",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Immutable(paths)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_database_that_cannot_be_written_is_503_for_tokens_and_recovers_when_writable() {
    let up = Upstream::echo().await;
    let gw = sqlite_gateway(&up).await;
    let issued = new_token(&gw).await;
    let db = db_path(&gw);
    let wal = db.with_extension("db-wal");
    assert!(wal.exists(), "WAL mode keeps {}", wal.display());
    let dir = db.parent().expect("data/").to_path_buf();
    // chmod would not do: tests may run as root, and tollgate's descriptors are open already.
    let read_only = Immutable::set(&[&db, &wal, &dir]);
    assert_token_endpoint_unavailable(&gw, "read-only").await;
    assert_token_endpoint_unavailable(&gw, "read-only, again").await;
    assert_guard_passes(&gw, &issued, "read-only").await;

    drop(read_only);
    let after = new_token(&gw).await;
    assert_guard_passes(&gw, &after, "writable again").await;
}

// ---------------------------------------------------------------- the LDAP directory

#[tokio::test]
async fn a_directory_stopped_mid_pool_is_a_503_page_and_sign_in_works_once_it_is_back() {
    let mut slapd = Slapd::start();
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&crate::ldap::ldap_gateway_config(
        &slapd.search_config(),
        &up.url(),
    ))
    .await;
    // A sign-in through the search pool leaves pooled connections to the directory.
    let first = crate::ldap::sign_in(&gw, "alice", "wonderland").await;
    assert_eq!(first.status(), 200);
    assert!(first.text().await.expect("html").contains("Alice Liddell"));

    slapd.stop();
    let started = Instant::now();
    let down = crate::ldap::sign_in(&gw, "bob", "canwefixit").await;
    assert_eq!(down.status(), 503);
    assert!(started.elapsed() < OUTAGE_BOUND, "{:?}", started.elapsed());
    let html = down.text().await.expect("html");
    assert!(
        html.contains("The sign-in service is unavailable"),
        "the outage page says so: {html}"
    );

    slapd.restart();
    let back = crate::ldap::sign_in(&gw, "bob", "canwefixit").await;
    assert_eq!(back.status(), 200, "sign-in works again without a restart");
    assert!(back.text().await.expect("html").contains("Bob Builder"));
    let m = gw.metrics().await;
    assert_eq!(
        common::count(&m, "tollgate_logins_total", &[("result", "unavailable")]),
        1
    );
    assert_eq!(
        common::count(&m, "tollgate_logins_total", &[("result", "success")]),
        2
    );
}
