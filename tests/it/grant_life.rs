//! A user's grant lives no longer than the user and its own absolute end: a refresh (and a
//! code exchange) asks the users file again whether the user is still there, and no token
//! outlives `[oauth] grant_max_lifetime`, however often the refresh token rotates.
//! The same rules against a real LDAP directory are in `ldap.rs`.

use crate::common::now;
use crate::common::oauth::{
    write_users, AuthConfig, AuthRequest, AuthServer, Browser, JsonAnswer, MAIL_APP, USER,
};
use serde_json::json;
use std::time::{Duration, Instant};

/// Asserts a token no longer works anywhere: 401 at the gateway, inactive at /verify.
async fn assert_dead(s: &AuthServer, access: &str, what: &str) {
    let (status, body) = s.call("/api/mail/inbox", access).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(s.verify(access).await, json!({"active": false}), "{what}");
}

/// Asserts the plain `invalid_grant` answer: nothing says the user is gone.
#[track_caller]
fn assert_plain_invalid_grant(answer: &JsonAnswer) {
    answer.assert_error(400, "invalid_grant");
    let description = answer.json["error_description"].as_str().unwrap_or("");
    for word in ["user", "directory", "exist", "removed"] {
        assert!(!description.contains(word), "{description}");
    }
}

#[tokio::test]
async fn refresh_of_a_user_removed_from_the_users_file_is_refused_and_revokes_the_grant() {
    let s = AuthConfig::default().spawn().await;
    let first = s.tokens("email").await;
    let rotated = s.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.json);

    // The administrator edits the users file; no restart, no reload command.
    write_users(&s.users_file(), &["bob"]);
    let refused = s.refresh(MAIL_APP, rotated.refresh_token(), None).await;
    assert_plain_invalid_grant(&refused);
    assert_dead(
        &s,
        rotated.access_token(),
        "access token of the removed user",
    )
    .await;

    // Putting the user back does not bring the revoked grant back.
    write_users(&s.users_file(), &[USER, "bob"]);
    s.refresh(MAIL_APP, rotated.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    // A new login works again.
    assert_eq!(s.tokens("email").await.status, 200);
}

#[tokio::test]
async fn code_of_a_user_removed_before_the_exchange_is_refused() {
    let s = AuthConfig::default().spawn().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let code = Browser::new().code(&s, &request).await;
    write_users(&s.users_file(), &["bob"]);
    let refused = s.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_plain_invalid_grant(&refused);
}

#[tokio::test]
async fn a_grant_ends_at_grant_max_lifetime_however_often_it_rotates() {
    let s = AuthConfig::default().grant_max_lifetime("3s").spawn().await;
    let authorized = now();
    let started = Instant::now();
    let mut answer = s.tokens("email").await;
    // The user approved between `authorized` and now (whole seconds).
    let latest_end = now() + 3;
    let mut rotations = 0;
    let mut last_access = answer.access_token().to_string();
    loop {
        let expires_in = answer.json["expires_in"].as_u64().expect("expires_in");
        assert!(
            expires_in <= 3,
            "access token capped by the grant: {expires_in}"
        );
        let exp = s.verify(answer.access_token()).await["exp"]
            .as_u64()
            .expect("exp");
        assert!(
            exp <= latest_end,
            "exp {exp} past the grant's end {latest_end}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = s.refresh(MAIL_APP, answer.refresh_token(), None).await;
        if next.status != 200 {
            next.assert_error(400, "invalid_grant");
            break;
        }
        rotations += 1;
        last_access = next.access_token().to_string();
        answer = next;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "rotation never stopped"
        );
    }
    assert!(rotations >= 2, "rotated {rotations} times before the end");
    assert!(now() >= authorized + 3, "refused before the grant's end");
    assert_eq!(
        s.verify(&last_access).await,
        json!({"active": false}),
        "the last access token ended with the grant"
    );
}
