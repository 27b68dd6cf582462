//! Two tollgate instances on one host sharing one SQLite file (issue 9, item 5: restarts
//! with no downtime) act as one authorization server, and a revocation at one is refused at
//! the other within a second although its cache would keep the answer for a minute: the
//! same promise as with Redis (see `instances.rs`), carried by the revocations table.

use crate::common::oauth::{AuthConfig, AuthRequest, AuthServer, Browser, MAIL_APP, REPORTS, USER};
use crate::common::process::Process;
use crate::common::shared_store;
use crate::common::Upstream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The config both instances share: one SQLite file, answers cached for 60 s.
fn shared_config(db: &Path) -> AuthConfig {
    AuthConfig::default()
        .store(&format!("sqlite:{}", db.display()))
        .verify("cache_ttl = \"60s\"")
}

/// Two in-process instances, A and B, on one SQLite file in `dir`.
async fn two_instances(dir: &Path) -> (AuthServer, AuthServer) {
    let config = shared_config(&dir.join("shared.db"));
    let a = config.clone().spawn().await;
    let b = config.spawn().await;
    (a, b)
}

#[tokio::test]
async fn a_token_revoked_at_one_instance_is_refused_at_another_on_the_same_file_within_a_second() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_instances(dir.path()).await;
    shared_store::a_revocation_reaches_a_cached_instance(&a, &b).await;
}

#[tokio::test]
async fn refresh_reuse_at_one_instance_revokes_the_grant_at_the_other_on_the_same_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_instances(dir.path()).await;
    let first = a.tokens("email").await;
    // Rotated at B: the refresh token A issued is good there, and single-use everywhere.
    let second = b.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(b.subject_seen_upstream(second.access_token()).await, USER);
    assert_eq!(b.subject_seen_upstream(second.access_token()).await, USER);

    // The old refresh token again, at A: the whole grant dies, at B too.
    a.refresh(MAIL_APP, first.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    let answered = Instant::now();
    let lag = b
        .refused_after(second.access_token(), answered, Duration::from_secs(1))
        .await;
    eprintln!("grant revocation reached B over SQLite after {lag:?}");
    b.refresh(MAIL_APP, second.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_redeemed_at_one_instance_on_the_same_file_cannot_be_redeemed_at_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_instances(dir.path()).await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let code = Browser::for_server(&a).code(&a, &request).await;
    let first = b.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(
        first.status, 200,
        "made at A, redeemed at B: {}",
        first.json
    );
    assert_eq!(a.subject_seen_upstream(first.access_token()).await, USER);
    assert_eq!(b.subject_seen_upstream(first.access_token()).await, USER);
    a.exchange(MAIL_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    // The replay at A revoked what B issued, in B's cache too.
    b.refused_after(first.access_token(), Instant::now(), Duration::from_secs(1))
        .await;
}

// ---------------------------------------------------------------- two real processes

/// The status of `GET /api/mail/inbox` with `token` at `p`.
async fn call(http: &reqwest::Client, p: &Process, token: &str) -> u16 {
    http.get(p.url("/api/mail/inbox"))
        .bearer_auth(token)
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tollgate_processes_on_one_sqlite_file_share_revocations_within_a_second() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Upstream::echo().await;
    let config = shared_config(&dir.path().join("shared.db"));
    let mut processes = Vec::new();
    for name in ["a", "b"] {
        let own = dir.path().join(name);
        std::fs::create_dir(&own).expect("instance directory");
        processes.push(Process::auth_server(&own, &config, &up).await);
    }
    let (a, b) = (&processes[0], &processes[1]);
    let http = crate::common::client();
    let secret = REPORTS.secret.expect("a confidential client");
    let answer: serde_json::Value = http
        .post(a.url("/oauth/token"))
        .basic_auth(REPORTS.id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token endpoint answers")
        .json()
        .await
        .expect("JSON");
    let token = answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {answer}"));
    // B honours it and caches the answer.
    assert_eq!(call(&http, b, token).await, 200, "{}", b.stderr());
    assert_eq!(call(&http, b, token).await, 200);

    let revoked = http
        .post(a.url("/oauth/revoke"))
        .basic_auth(REPORTS.id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("revocation answers");
    assert_eq!(revoked.status(), 200);
    let answered = Instant::now();
    assert_eq!(call(&http, a, token).await, 401, "at once at A");
    loop {
        let status = call(&http, b, token).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "B still accepts the token after 1 s:\n{}",
            b.stderr()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "revocation reached process B after {:?}",
        answered.elapsed()
    );
}
