//! Audit lines: the events of the authorization server under the `audit` target, with
//! their fixed fields, and never a password or a token among them.
//!
//! The lines are captured in this test's thread: a `#[tokio::test]` runs tollgate's tasks
//! on the test's own thread, where a default subscriber set here sees their events.

use crate::common::oauth::{AuthConfig, CLI_APP, MAIL_APP, PASSWORD, USER};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }

    /// The audit lines, each without its timestamp.
    fn audit_lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.split_once(" audit: ").map(|(_, rest)| rest.to_string()))
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn sign_ins_bans_tokens_and_replays_leave_audit_lines_without_secrets() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = AuthConfig::default()
        .allow_password_grant(true)
        .server("")
        .spawn()
        .await;
    // Throttling defaults: 5 failures per user ban the user.
    let password_grant = |password: &'static str| {
        let form = [
            ("grant_type", "password"),
            ("username", USER),
            ("password", password),
            ("scope", "email"),
        ];
        let s = &s;
        async move { s.token(CLI_APP, &form).await }
    };
    let good = password_grant(PASSWORD).await;
    assert_eq!(good.status, 200, "{}", good.json);
    let refresh = good.refresh_token().to_string();
    let access = good.access_token().to_string();
    let rotated = s.refresh(CLI_APP, &refresh, None).await;
    assert_eq!(rotated.status, 200);
    let reused = s.refresh(CLI_APP, &refresh, None).await;
    reused.assert_error(400, "invalid_grant");
    for _ in 0..5 {
        password_grant("wrong-guess-1")
            .await
            .assert_error(400, "invalid_grant");
    }
    password_grant(PASSWORD)
        .await
        .assert_error(400, "invalid_grant");
    let revoked = s.revoke(CLI_APP, rotated.access_token()).await;
    assert_eq!(revoked.status, 200);
    let bad = s
        .token(
            crate::common::oauth::Client {
                id: MAIL_APP.id,
                secret: Some("a-wrong-secret-9"),
            },
            &[("grant_type", "client_credentials")],
        )
        .await;
    bad.assert_error(401, "invalid_client");

    let lines = captured.audit_lines();
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
    let text = captured.text();
    for secret in [
        PASSWORD,
        "wrong-guess-1",
        "a-wrong-secret-9",
        "cli-app-secret",
        refresh.as_str(),
        access.as_str(),
        rotated.access_token(),
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
