//! Brute-force protection: bans happen at the limit, a right password during a ban is
//! still refused, bans lift, and both the login form and the password grant are covered.

use crate::common::{self, TestGateway};
use std::time::{Duration, Instant};

const AUTHORIZE_QUERY: &str =
    "response_type=code&client_id=mail-app&redirect_uri=http%3A%2F%2F127.0.0.1%3A7000%2Fredirect&scope=email&state=s";

async fn gateway(throttle: &str) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = tollgate::secrets::hash_password("wonderland").expect("hash");
    let users = format!(
        "[[users]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\n\n[[users]]\nusername = \"bob\"\npassword_hash = \"{hash}\"\n"
    );
    std::fs::write(dir.path().join("users.toml"), users).expect("users file");
    let secret = tollgate::secrets::fast_secret_hash("mail-secret");
    let config = format!(
        "[oauth]\nstore = \"memory\"\nallow_password_grant = true\n[oauth.scopes]\nemail = \"Read your email\"\n\
         [users]\nsource = \"file\"\nfile = \"users.toml\"\n[users.throttle]\n{throttle}\n\
         [[clients]]\nid = \"mail-app\"\nname = \"Awesome Mail\"\nsecret_hash = \"{secret}\"\n\
         redirect_uris = [\"http://127.0.0.1:7000/redirect\"]\n\
         grant_types = [\"authorization_code\", \"password\"]\nscopes = [\"email\"]\n"
    );
    TestGateway::spawn_in(dir, &config).await
}

/// Outcome of one login form submission.
#[derive(Debug, PartialEq, Eq)]
enum Login {
    SignedIn,
    Refused,
}

/// Submits the login form in a fresh browser, as a person would.
async fn login_form(gw: &TestGateway, user: &str, password: &str) -> Login {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login_url = gw.url(&format!("/oauth/login?{AUTHORIZE_QUERY}"));
    let html = browser
        .get(&login_url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = common::csrf_field(&html);
    let response = browser
        .post(&login_url)
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .expect("submit");
    if response.status() == 303 {
        assert!(
            response.headers().get("set-cookie").is_some(),
            "a session starts"
        );
        return Login::SignedIn;
    }
    assert_eq!(response.status(), 200, "refusals show the login page again");
    let body = response.text().await.expect("html");
    assert!(
        body.contains("The username or password is not right."),
        "neutral message: {body}"
    );
    Login::Refused
}

async fn password_grant(gw: &TestGateway, user: &str, password: &str) -> (u16, String) {
    let r = common::client()
        .post(gw.url("/oauth/token"))
        .basic_auth("mail-app", Some("mail-secret"))
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("json");
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn ban_after_limit_refuses_even_the_right_password_then_lifts() {
    let gw = gateway(
        "max_failures_per_user = 3\nmax_failures_per_ip = 100\nwindow = \"1m\"\nban = \"2s\"",
    )
    .await;
    assert_eq!(
        login_form(&gw, "alice", "wonderland").await,
        Login::SignedIn
    );
    for _ in 0..3 {
        assert_eq!(login_form(&gw, "alice", "guess").await, Login::Refused);
    }
    assert_eq!(
        login_form(&gw, "alice", "wonderland").await,
        Login::Refused,
        "banned: right password refused"
    );
    assert_eq!(
        login_form(&gw, "ALICE", "wonderland").await,
        Login::Refused,
        "case does not dodge the ban"
    );
    assert_eq!(
        login_form(&gw, "bob", "wonderland").await,
        Login::SignedIn,
        "other users are not affected"
    );
    let metrics = gw.metrics().await;
    assert!(
        common::metric(&metrics, "tollgate_logins_total{result=\"throttled\"}").unwrap_or(0.0)
            >= 2.0
    );
    assert_eq!(
        common::metric(&metrics, "tollgate_login_bans_total{kind=\"user\"}"),
        Some(1.0)
    );

    // The ban lifts after its back-off period (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if login_form(&gw, "alice", "wonderland").await == Login::SignedIn {
            break;
        }
        assert!(Instant::now() < deadline, "the ban did not lift");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn many_failures_from_one_address_ban_the_address() {
    let gw = gateway(
        "max_failures_per_user = 100\nmax_failures_per_ip = 4\nwindow = \"1m\"\nban = \"1m\"",
    )
    .await;
    for user in ["u1", "u2", "u3", "u4"] {
        assert_eq!(login_form(&gw, user, "guess").await, Login::Refused);
    }
    assert_eq!(
        login_form(&gw, "bob", "wonderland").await,
        Login::Refused,
        "the address is banned"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        common::metric(&metrics, "tollgate_login_bans_total{kind=\"ip\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn password_grant_is_throttled_with_the_same_neutral_error() {
    let gw = gateway(
        "max_failures_per_user = 2\nmax_failures_per_ip = 100\nwindow = \"1m\"\nban = \"1m\"",
    )
    .await;
    assert_eq!(password_grant(&gw, "alice", "wonderland").await.0, 200);
    assert_eq!(
        password_grant(&gw, "alice", "x").await,
        (400, "invalid_grant".to_string())
    );
    assert_eq!(
        password_grant(&gw, "alice", "y").await,
        (400, "invalid_grant".to_string())
    );
    assert_eq!(
        password_grant(&gw, "alice", "wonderland").await,
        (400, "invalid_grant".to_string())
    );
}

#[tokio::test]
async fn wrong_user_and_wrong_password_both_pay_the_failure_floor() {
    let gw = gateway("max_failures_per_user = 1000\nmax_failures_per_ip = 1000").await;
    for user in ["nobody-here", "alice"] {
        let t = Instant::now();
        assert_eq!(
            password_grant(&gw, user, "guess").await,
            (400, "invalid_grant".to_string())
        );
        // A lower bound only (the floor is a sleep): no speed is asserted here.
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{user}: {:?}",
            t.elapsed()
        );
    }
}

/// Submits the login form in a fresh browser and returns how long the POST alone took.
async fn timed_login_form(gw: &TestGateway, user: &str, password: &str) -> Duration {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login_url = gw.url(&format!("/oauth/login?{AUTHORIZE_QUERY}"));
    let html = browser
        .get(&login_url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let csrf = common::csrf_field(&html);
    let started = Instant::now();
    let response = browser
        .post(&login_url)
        .form(&[
            ("username", user),
            ("password", password),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .expect("submit");
    let took = started.elapsed();
    assert_eq!(response.status(), 200, "refused with the login page again");
    took
}

#[tokio::test]
async fn a_banned_username_is_refused_no_faster_than_the_failure_floor() {
    let gw = gateway(
        "max_failures_per_user = 1\nmax_failures_per_ip = 1000\nwindow = \"1m\"\nban = \"1m\"",
    )
    .await;
    assert_eq!(
        password_grant(&gw, "alice", "guess").await,
        (400, "invalid_grant".to_string()),
        "one failure bans alice"
    );
    for password in ["wonderland", "guess"] {
        let took = timed_login_form(&gw, "alice", password).await;
        // A lower bound only (the floor is a sleep): no speed is asserted here.
        assert!(took >= Duration::from_millis(200), "login form: {took:?}");
        let started = Instant::now();
        assert_eq!(
            password_grant(&gw, "alice", password).await,
            (400, "invalid_grant".to_string())
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "password grant: {took:?}"
        );
    }
    let metrics = gw.metrics().await;
    assert_eq!(
        common::metric(&metrics, "tollgate_logins_total{result=\"throttled\"}"),
        Some(4.0),
        "every timed attempt was refused by the ban"
    );
}
