//! Audit lines: the events of the authorization server under the `audit` target, with
//! their fixed fields, and never a password or a token among them. Read from the stderr
//! of the real binary (a subscriber set in a test would share callsites with every other
//! test running in this process).

use crate::common::oauth::{AuthConfig, CLI_APP, MAIL_APP, PASSWORD, USER};
use crate::common::process::Process;
use crate::common::{self, Upstream};
use serde_json::Value;

#[tokio::test]
async fn sign_ins_bans_tokens_and_replays_leave_audit_lines_without_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Upstream::echo().await;
    let config = AuthConfig::default().allow_password_grant(true);
    let mut child = Process::auth_server(dir.path(), &config, &up).await;
    let http = common::client();
    let cli_secret = CLI_APP.secret.expect("confidential");
    let token = |form: Vec<(&'static str, String)>| {
        http.post(child.url("/oauth/token"))
            .basic_auth(CLI_APP.id, Some(cli_secret))
            .form(&form)
            .send()
    };
    let password_grant = |password: &'static str| {
        token(vec![
            ("grant_type", "password".into()),
            ("username", USER.into()),
            ("password", password.into()),
            ("scope", "email".into()),
        ])
    };
    let good: Value = password_grant(PASSWORD)
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let access = good["access_token"].as_str().expect("access").to_string();
    let refresh = good["refresh_token"].as_str().expect("refresh").to_string();
    let refreshing = || {
        token(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh.clone()),
        ])
    };
    let rotated: Value = refreshing()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let rotated_access = rotated["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    assert_eq!(refreshing().await.expect("sent").status(), 400, "reuse");
    // Throttling defaults: 5 failures of one user ban the user.
    for _ in 0..5 {
        let r = password_grant("wrong-guess-1").await.expect("sent");
        assert_eq!(r.status(), 400);
    }
    assert_eq!(password_grant(PASSWORD).await.expect("sent").status(), 400);
    let r = http
        .post(child.url("/oauth/revoke"))
        .basic_auth(CLI_APP.id, Some(cli_secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = http
        .post(child.url("/oauth/token"))
        .basic_auth(MAIL_APP.id, Some("a-wrong-secret-9"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("bad client");
    assert_eq!(r.status(), 401);
    assert_eq!(child.stop().await, Some(0));

    let text = child.stderr();
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(" audit: ").map(|(_, rest)| rest))
        .collect();
    let want = [
        "event=\"login\" result=\"success\" username=\"alice\" client_addr=\"127.0.0.1\"",
        "event=\"token_issued\" grant_type=\"password\" client_id=\"cli-app\" sub=\"alice\" scope=\"email\" refresh=true",
        "event=\"token_issued\" grant_type=\"refresh_token\" client_id=\"cli-app\" sub=\"alice\"",
        "event=\"grant_revoked\" reason=\"refresh_reuse\" client_id=\"cli-app\" sub=\"alice\"",
        "event=\"login\" result=\"failure\" username=\"alice\" client_addr=\"127.0.0.1\"",
        "event=\"login_ban\" kind=\"user\" username=\"alice\" client_addr=\"127.0.0.1\" failures=5",
        "event=\"login\" result=\"throttled\" username=\"alice\"",
        "event=\"token_revoked\" kind=\"access\" client_id=\"cli-app\" sub=\"alice\"",
        "event=\"invalid_client\" client_id=\"mail-app\" client_addr=\"127.0.0.1\"",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.contains(w)),
            "no audit line with {w}:\n{lines:#?}"
        );
    }
    for secret in [
        PASSWORD,
        "wrong-guess-1",
        "a-wrong-secret-9",
        cli_secret,
        refresh.as_str(),
        access.as_str(),
        rotated_access.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
