//! Several tollgate instances sharing one Redis store act as one authorization server
//! (issue 9): what one issues the others honour, a code is redeemed once across them, login
//! failures count once, and a revocation at one is refused at the others within a second
//! although their caches would keep the answer for a minute, also when an instance's link
//! to Redis was cut meanwhile.

use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, TestStore, CLI_APP, MAIL_APP, PASSWORD, REPORTS,
    USER,
};
use crate::common::process::Process;
use crate::common::shared_store;
use crate::common::tcp_proxy::TcpProxy;
use std::time::{Duration, Instant};

/// Three instances, A, B and C, on one Redis prefix, caching answers for 60 s.
async fn three_instances() -> (AuthServer, AuthServer, AuthServer) {
    three_instances_of(
        AuthConfig::default()
            .on(TestStore::Redis)
            .verify("cache_ttl = \"60s\""),
    )
    .await
}

async fn three_instances_of(config: AuthConfig) -> (AuthServer, AuthServer, AuthServer) {
    let a = config.clone().spawn().await;
    let b = config.clone().spawn().await;
    let c = config.spawn().await;
    (a, b, c)
}

/// Nearest-rank percentile of sorted `lags`.
fn percentile(lags: &[Duration], p: usize) -> Duration {
    lags[(lags.len() * p).div_ceil(100).saturating_sub(1)]
}

#[tokio::test]
async fn a_token_revoked_at_one_instance_is_refused_at_another_within_a_second() {
    let (a, b, _c) = three_instances().await;
    shared_store::a_revocation_reaches_a_cached_instance(&a, &b).await;
}

#[tokio::test]
async fn refresh_reuse_at_one_instance_revokes_the_grant_at_every_instance() {
    let (a, b, c) = three_instances().await;
    let first = a.tokens("email").await;
    // Rotated at B: the refresh token A issued is good there, and single-use everywhere.
    let second = b.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(b.subject_seen_upstream(second.access_token()).await, USER);

    // The old refresh token again, at A: the whole grant dies, at B too.
    a.refresh(MAIL_APP, first.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    let answered = Instant::now();
    b.refused_after(second.access_token(), answered, Duration::from_secs(1))
        .await;
    c.refused_after(second.access_token(), answered, Duration::from_secs(1))
        .await;
    c.refresh(MAIL_APP, second.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn a_code_redeemed_at_one_instance_cannot_be_redeemed_at_another() {
    let (a, b, _c) = three_instances().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let code = Browser::for_server(&a).code(&a, &request).await;
    let first = b.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(
        first.status, 200,
        "a code made at A is redeemed at B: {}",
        first.json
    );
    assert_eq!(a.subject_seen_upstream(first.access_token()).await, USER);
    assert_eq!(b.subject_seen_upstream(first.access_token()).await, USER);
    a.exchange(MAIL_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    // The replay revoked what the first redemption issued, at both instances.
    a.refused_after(first.access_token(), Instant::now(), Duration::from_secs(1))
        .await;
    b.refused_after(first.access_token(), Instant::now(), Duration::from_secs(1))
        .await;
}

#[tokio::test]
async fn thirty_concurrent_redemptions_of_one_code_over_three_instances_succeed_once() {
    let (a, b, c) = three_instances().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let code = Browser::for_server(&a).code(&a, &request).await;
    let instances = [&a, &b, &c];
    let attempts = (0..30).map(|i| instances[i % 3].exchange(MAIL_APP, &code, request.verifier()));
    let answers = futures_util::future::join_all(attempts).await;
    let won: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(won.len(), 1, "exactly one redemption succeeds");
    for lost in answers.iter().filter(|r| r.status != 200) {
        lost.assert_error(400, "invalid_grant");
    }
    // Every loser was a replay: the grant, and the winner's token with it, is revoked.
    let token = won[0].access_token();
    for s in instances {
        s.refused_after(token, Instant::now(), Duration::from_secs(1))
            .await;
    }
}

/// `grant_type=password` for the user with `secret`.
async fn password(s: &AuthServer, secret: &str) -> crate::common::oauth::JsonAnswer {
    let form = [
        ("grant_type", "password"),
        ("username", USER),
        ("password", secret),
    ];
    s.token(CLI_APP, &form).await
}

#[tokio::test]
async fn login_failures_at_three_instances_count_once_toward_the_ban() {
    let (a, b, c) = three_instances_of(
        AuthConfig::default()
            .on(TestStore::Redis)
            .allow_password_grant(true)
            .extra(
                "[users.throttle]\nmax_failures_per_user = 3\nmax_failures_per_ip = 100\n\
                 window = \"1m\"\nban = \"1m\"\n",
            ),
    )
    .await;
    // One wrong password at each instance: two would leave the user free at every one.
    for s in [&a, &b] {
        password(s, "guess")
            .await
            .assert_error(400, "invalid_grant");
    }
    assert_eq!(password(&c, PASSWORD).await.status, 200, "not banned yet");
    for s in [&a, &b, &c] {
        password(s, "guess")
            .await
            .assert_error(400, "invalid_grant");
    }
    // The third failure (counted across A, B and C) banned the user everywhere.
    for s in [&a, &b, &c] {
        password(s, PASSWORD)
            .await
            .assert_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn each_of_200_cached_tokens_revoked_at_one_instance_is_refused_at_the_others_within_a_second(
) {
    let (a, b, c) = three_instances().await;
    let mut tokens = Vec::new();
    for _ in 0..200 {
        let answer = a
            .token(REPORTS, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        let token = answer.access_token().to_string();
        for s in [&b, &c] {
            assert_eq!(s.subject_seen_upstream(&token).await, REPORTS.id, "cached");
        }
        tokens.push(token);
    }
    let (mut at_b, mut at_c) = (Vec::new(), Vec::new());
    for token in &tokens {
        let revoked = a.revoke(REPORTS, token).await;
        assert_eq!(revoked.status, 200, "{}", revoked.json);
        let answered = Instant::now();
        at_b.push(
            b.refused_after(token, answered, Duration::from_secs(1))
                .await,
        );
        at_c.push(
            c.refused_after(token, answered, Duration::from_secs(1))
                .await,
        );
    }
    for (name, lags) in [("B", &mut at_b), ("C", &mut at_c)] {
        lags.sort();
        eprintln!(
            "revocation lag A -> {name} over {} tokens: p50 {:?}, p99 {:?}, max {:?}",
            lags.len(),
            percentile(lags, 50),
            percentile(lags, 99),
            lags[lags.len() - 1]
        );
    }
}

/// B reaches Redis through a proxy the test cuts while A revokes. `deny` routes at B refuse
/// the token once the stream has been silent `max_stale`; `serve_cached` routes serve it
/// within `stale_grace` (the documented trade); once the link is back no route serves it.
#[tokio::test]
async fn a_revocation_made_while_an_instance_is_cut_off_is_honoured_there() {
    let redis: std::net::SocketAddr = "127.0.0.1:6379".parse().expect("address");
    let proxy = TcpProxy::start(redis).await;
    let config = AuthConfig::default()
        .on(TestStore::Redis)
        .verify("cache_ttl = \"60s\"\nmax_stale = \"300ms\"\nstale_grace = \"2s\"");
    let a = config.clone().spawn().await;
    let up = crate::common::Upstream::echo().await;
    let via_proxy = config
        .clone()
        .store(&format!("redis://{}/0", proxy.addr))
        .extra(&config_extra_for(&up.url()));
    let b = via_proxy
        .spawn_in(tempfile::tempdir().expect("temp dir"), up)
        .await;
    let token = a
        .token(REPORTS, &[("grant_type", "client_credentials")])
        .await
        .access_token()
        .to_string();
    for path in ["/api/mail/inbox", "/api/strict/x"] {
        assert_eq!(b.call(path, &token).await.0, 200, "cached at B: {path}");
    }

    proxy.cut();
    let cut = Instant::now();
    let revoked = a.revoke(REPORTS, &token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    // deny: refused no later than max_stale (plus one probe's slack) after the link went
    // silent; never served once refused.
    let mut refused_at = None;
    while cut.elapsed() < Duration::from_secs(2) {
        let (status, body) = b.call("/api/strict/x", &token).await;
        match (status.as_u16(), refused_at) {
            (503, None) => refused_at = Some(cut.elapsed()),
            (503, Some(_)) => {}
            (200, None) => {}
            other => panic!("strict route at B: {other:?} {body}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_at = refused_at.expect("the deny route refused the token while cut off");
    eprintln!("B's deny route refused the token {refused_at:?} after its link was cut");
    assert!(
        refused_at <= Duration::from_millis(300 + 500),
        "{refused_at:?}"
    );

    proxy.restore();
    let restored = Instant::now();
    // Once the link is back the revocation arrives (stream resume or a re-check at the
    // store): every route answers 401 and never 200 again.
    let mut seen_401 = [false, false];
    while restored.elapsed() < Duration::from_secs(3) {
        for (i, path) in ["/api/mail/inbox", "/api/strict/x"].iter().enumerate() {
            let (status, body) = b.call(path, &token).await;
            assert_ne!(
                status, 200,
                "{path} served a revoked token after the link came back: {body}"
            );
            seen_401[i] |= status == 401;
        }
        if seen_401 == [true, true] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen_401,
        [true, true],
        "both routes refuse with 401 once linked"
    );
    eprintln!(
        "B refused the token with 401 {:?} after the link returned",
        restored.elapsed()
    );
    // A few more rounds: still refused.
    for _ in 0..20 {
        for path in ["/api/mail/inbox", "/api/strict/x"] {
            assert_eq!(b.call(path, &token).await.0, 401, "{path}");
        }
    }
}

/// The strict route of [`a_revocation_made_while_an_instance_is_cut_off_is_honoured_there`]
/// pointed at `upstream`.
fn config_extra_for(upstream: &str) -> String {
    format!(
        "[[routes]]\nname = \"strict\"\npath_prefix = \"/api/strict\"\nupstream = \"{upstream}\"\n\
         auth = \"bearer\"\nscopes = [\"email\"]\nwhen_store_down = \"deny\"\n"
    )
}

/// The same promise between real `tollgate run` processes, not only between instances in
/// one test process: a token issued at one works at the others and, revoked, is refused at
/// both within a second although they cached it for a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tollgate_processes_on_one_redis_share_tokens_and_revocations() {
    let config = AuthConfig::default()
        .on(TestStore::Redis)
        .verify("cache_ttl = \"60s\"");
    let up = crate::common::Upstream::echo().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut processes = Vec::new();
    for name in ["a", "b", "c"] {
        let own = dir.path().join(name);
        std::fs::create_dir(&own).expect("instance directory");
        processes.push(Process::auth_server(&own, &config, &up).await);
    }
    let http = crate::common::client();
    let status = |p: &Process, token: &str| {
        let request = http.get(p.url("/api/mail/inbox")).bearer_auth(token);
        async move {
            request
                .send()
                .await
                .expect("gateway answers")
                .status()
                .as_u16()
        }
    };
    let secret = REPORTS.secret.expect("a confidential client");
    let answer: serde_json::Value = http
        .post(processes[0].url("/oauth/token"))
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
    for p in &processes {
        // Twice: the second answer comes from the process's cache.
        assert_eq!(status(p, token).await, 200, "{}", p.stderr());
        assert_eq!(status(p, token).await, 200);
    }
    let revoked = http
        .post(processes[0].url("/oauth/revoke"))
        .basic_auth(REPORTS.id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("revocation answers");
    assert_eq!(revoked.status(), 200);
    let answered = Instant::now();
    assert_eq!(status(&processes[0], token).await, 401, "at once at A");
    for (name, p) in ["B", "C"].iter().zip(&processes[1..]) {
        loop {
            match status(p, token).await {
                401 => break,
                200 => {}
                other => panic!("{name} answered {other}:\n{}", p.stderr()),
            }
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "{name} still accepts the token after 1 s:\n{}",
                p.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "process {name} refused the revoked token {:?} after the revocation",
            answered.elapsed()
        );
    }
}
