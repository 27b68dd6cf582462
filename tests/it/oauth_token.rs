//! The token endpoint's grants and errors (RFC 6749 §4–§6, RFC 7636), revocation
//! (RFC 7009), introspection at `/verify` (RFC 7662), the metadata document (RFC 8414),
//! and tokens surviving a restart on the SQLite store.

use crate::common::now;
use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, Client, ClientAuth, TestStore, CLI_APP, MAIL_APP,
    OTHER_APP, PASSWORD, REDIRECT_URI, REPORTS, RESOURCE_SERVER, SECOND_REDIRECT_URI, USER,
};
use serde_json::{json, Value};
use std::time::Duration;

async fn server() -> AuthServer {
    AuthConfig::default().spawn().await
}

/// A fresh code for `MAIL_APP` and the request it answers.
async fn code(s: &AuthServer, scope: &str) -> (AuthRequest, String) {
    let request = AuthRequest::code(MAIL_APP, scope);
    let code = Browser::new().code(s, &request).await;
    (request, code)
}

/// Asserts a token no longer works anywhere: 401 at the gateway, inactive at /verify.
async fn assert_dead(s: &AuthServer, access: &str, what: &str) {
    let (status, body) = s.call("/api/mail/inbox", access).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(s.verify(access).await, json!({"active": false}), "{what}");
}

async fn issued(s: &AuthServer, grant_type: &str) -> u64 {
    s.counter("tollgate_tokens_issued_total", "grant_type", grant_type)
        .await
}

// ---------------------------------------------------------------- authorization_code

#[tokio::test]
async fn wrong_pkce_verifier_is_invalid_grant() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    let other_verifier = tollgate::secrets::random_token();
    assert_ne!(other_verifier, request.verifier());
    s.exchange(MAIL_APP, &code, &other_verifier)
        .await
        .assert_error(400, "invalid_grant");
    let without = s
        .token(
            MAIL_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
        )
        .await;
    without.assert_error(400, "invalid_grant");
    assert_eq!(issued(&s, "authorization_code").await, 0);
}

#[tokio::test]
async fn replayed_code_revokes_tokens_from_first_exchange() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let (request, code) = code(&s, "email").await;
        let first = s.exchange(MAIL_APP, &code, request.verifier()).await;
        assert_eq!(first.status, 200, "{}", first.json);
        let access = first.access_token();
        let refresh = first.refresh_token();
        // The verdict is now cached at the gateway.
        assert_eq!(s.subject_seen_upstream(access).await, USER);
        assert_eq!(s.verify(access).await["active"], true);

        let replay = s.exchange(MAIL_APP, &code, request.verifier()).await;
        replay.assert_error(400, "invalid_grant");

        assert_dead(&s, access, "access token of the first exchange").await;
        s.refresh(MAIL_APP, refresh, None)
            .await
            .assert_error(400, "invalid_grant");
        assert_eq!(
            s.up.hits(),
            1,
            "nothing reached the upstream after the replay"
        );
    }
}

#[tokio::test]
async fn concurrent_exchanges_of_one_code_leave_no_live_token() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let (request, code) = code(&s, "email").await;
        let attempts = (0..8).map(|_| s.exchange(MAIL_APP, &code, request.verifier()));
        let answers = futures_util::future::join_all(attempts).await;
        assert!(
            answers.iter().filter(|a| a.status == 200).count() <= 1,
            "one winner at most"
        );
        // Whatever the interleaving, the replay revokes the grant, the winner's tokens included.
        for answer in answers.iter().filter(|a| a.status == 200) {
            assert_eq!(s.verify(answer.access_token()).await["active"], false);
        }
    }
}

#[tokio::test]
async fn replayed_code_also_revokes_tokens_refreshed_from_its_grant() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    let first = s.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(first.status, 200, "{}", first.json);
    let rotated = s.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(rotated.status, 200, "{}", rotated.json);
    assert_eq!(s.subject_seen_upstream(rotated.access_token()).await, USER);

    s.exchange(MAIL_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    assert_dead(
        &s,
        rotated.access_token(),
        "access token refreshed from the grant",
    )
    .await;
    s.refresh(MAIL_APP, rotated.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let s = AuthConfig::default().code_ttl("1s").spawn().await;
    let (request, code) = code(&s, "email").await;
    // The code was issued at or before `issued_by`; with a 1 s life it is expired once the
    // clock has moved past that second.
    let issued_by = now();
    for _ in 0..50 {
        if now() > issued_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now() > issued_by, "the clock moved on");
    s.exchange(MAIL_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(issued(&s, "authorization_code").await, 0);
}

#[tokio::test]
async fn code_issued_to_another_client_is_invalid_grant() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    s.exchange(OTHER_APP, &code, request.verifier())
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(issued(&s, "authorization_code").await, 0);
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorization_request() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    for (redirect_uri, what) in [
        (Some(SECOND_REDIRECT_URI), "another registered URI"),
        (Some("http://127.0.0.1:7000/redirect/"), "a look-alike"),
        (None, "none, though the request named one"),
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", request.verifier()),
        ];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let answer = s.token(MAIL_APP, &form).await;
        assert_eq!(
            answer.error(),
            Some("invalid_grant"),
            "{what}: {}",
            answer.json
        );
        answer.assert_error(400, "invalid_grant");
    }
    assert_eq!(issued(&s, "authorization_code").await, 0);
}

// ---------------------------------------------------------------- client authentication

#[tokio::test]
async fn wrong_client_secret_is_401_invalid_client_with_basic_challenge() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", request.verifier()),
    ];
    let impostor = Client {
        id: MAIL_APP.id,
        secret: Some("not-the-secret"),
    };
    let basic = s.token_as(impostor, ClientAuth::Basic, &form).await;
    basic.assert_error(401, "invalid_client");
    let challenge = basic.header("www-authenticate").expect("a Basic challenge");
    assert!(
        challenge.to_ascii_lowercase().starts_with("basic"),
        "{challenge}"
    );

    let post = s.token_as(impostor, ClientAuth::Post, &form).await;
    post.assert_error(401, "invalid_client");

    let no_secret = Client {
        id: MAIL_APP.id,
        secret: None,
    };
    s.token_as(no_secret, ClientAuth::Post, &form)
        .await
        .assert_error(401, "invalid_client");
    let unknown = Client {
        id: "nobody",
        secret: Some("whatever"),
    };
    s.token_as(unknown, ClientAuth::Basic, &form)
        .await
        .assert_error(401, "invalid_client");

    // The code was not spent by the failed attempts.
    let good = s.token(MAIL_APP, &form).await;
    assert_eq!(good.status, 200, "{}", good.json);
}

#[tokio::test]
async fn client_secret_post_authenticates_too() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    let answer = s
        .token_as(
            MAIL_APP,
            ClientAuth::Post,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", request.verifier()),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(s.subject_seen_upstream(answer.access_token()).await, USER);
}

#[tokio::test]
async fn basic_and_client_secret_post_together_are_invalid_request() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    let answer = s
        .token_as(
            MAIL_APP,
            ClientAuth::Both,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", request.verifier()),
            ],
        )
        .await;
    answer.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn malformed_token_requests_get_rfc6749_error_json_and_no_store() {
    let s = server().await;
    for (form, status, error, what) in [
        (
            vec![("scope", "email")],
            400,
            "invalid_request",
            "missing grant_type",
        ),
        (
            vec![("grant_type", "magic")],
            400,
            "unsupported_grant_type",
            "unknown grant_type",
        ),
        (
            vec![("grant_type", "implicit")],
            400,
            "unsupported_grant_type",
            "implicit at /token",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            400,
            "invalid_request",
            "duplicate parameter",
        ),
        (
            vec![("grant_type", "client_credentials")],
            400,
            "unauthorized_client",
            "grant the client is not registered for",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT_URI),
            ],
            400,
            "invalid_request",
            "missing code",
        ),
        (
            vec![("grant_type", "authorization_code"), ("code", "made-up")],
            400,
            "invalid_grant",
            "unknown code",
        ),
    ] {
        let answer = s.token(MAIL_APP, &form).await;
        assert_eq!(answer.error(), Some(error), "{what}: {}", answer.json);
        answer.assert_error(status, error);
    }
    // A body that is not a form is refused the same way.
    let r = s
        .http
        .post(s.url("/oauth/token"))
        .basic_auth(MAIL_APP.id, MAIL_APP.secret)
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.expect("JSON error");
    assert_eq!(body["error"], "invalid_request");
    let counted = s.counter(
        "tollgate_token_endpoint_errors_total",
        "error",
        "invalid_request",
    );
    assert!(counted.await >= 3);
}

// ---------------------------------------------------------------- refresh_token

#[tokio::test]
async fn refresh_rotates_and_reuse_of_old_refresh_token_revokes_the_grant() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let first = s.tokens("email").await;
        let second = s.refresh(MAIL_APP, first.refresh_token(), None).await;
        assert_eq!(second.status, 200, "{}", second.json);
        assert_eq!(second.header("cache-control"), Some("no-store"));
        assert_ne!(second.refresh_token(), first.refresh_token(), "rotated");
        assert_ne!(second.access_token(), first.access_token());
        assert_eq!(s.subject_seen_upstream(second.access_token()).await, USER);
        let third = s.refresh(MAIL_APP, second.refresh_token(), None).await;
        assert_eq!(third.status, 200, "{}", third.json);
        assert_eq!(s.subject_seen_upstream(third.access_token()).await, USER);

        // An old refresh token used again: refused, and the whole grant dies with it.
        s.refresh(MAIL_APP, first.refresh_token(), None)
            .await
            .assert_error(400, "invalid_grant");
        assert_dead(&s, third.access_token(), "newest access token").await;
        assert_dead(&s, second.access_token(), "older access token").await;
        s.refresh(MAIL_APP, third.refresh_token(), None)
            .await
            .assert_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let s = server().await;
    let tokens = s.tokens("email").await;
    s.refresh(OTHER_APP, tokens.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    let own = s.refresh(MAIL_APP, tokens.refresh_token(), None).await;
    assert_eq!(
        own.status, 200,
        "still good for its own client: {}",
        own.json
    );
}

#[tokio::test]
async fn refresh_may_narrow_scope_but_not_widen_it() {
    let s = server().await;
    let both = s.tokens("email email.send").await;
    let narrow = s
        .refresh(MAIL_APP, both.refresh_token(), Some("email"))
        .await;
    assert_eq!(narrow.status, 200, "{}", narrow.json);
    assert_eq!(s.verify(narrow.access_token()).await["scope"], "email");
    assert_eq!(
        s.call("/api/mail/inbox", narrow.access_token()).await.0,
        200
    );
    assert_eq!(s.call("/api/send/out", narrow.access_token()).await.0, 403);
    // The grant keeps its full scope: the next refresh may ask for all of it again.
    let full = s.refresh(MAIL_APP, narrow.refresh_token(), None).await;
    assert_eq!(full.status, 200, "{}", full.json);
    let scope = s.verify(full.access_token()).await["scope"].clone();
    let mut scopes: Vec<&str> = scope.as_str().expect("scope string").split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["email", "email.send"]);

    let only_email = s.tokens("email").await;
    let wider = s
        .refresh(
            MAIL_APP,
            only_email.refresh_token(),
            Some("email email.send"),
        )
        .await;
    wider.assert_error(400, "invalid_scope");
    // Asking too much does not spend the refresh token.
    let again = s
        .refresh(MAIL_APP, only_email.refresh_token(), Some("email"))
        .await;
    assert_eq!(again.status, 200, "{}", again.json);
}

// ---------------------------------------------------------------- client_credentials, password

#[tokio::test]
async fn client_credentials_token_has_client_as_subject_and_no_username() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let answer = s
            .token(REPORTS, &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        assert!(
            answer.json.get("refresh_token").is_none(),
            "{}",
            answer.json
        );
        let v = s.verify(answer.access_token()).await;
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(v["sub"], REPORTS.id);
        assert_eq!(v["client_id"], REPORTS.id);
        assert!(v.get("username").is_none(), "{v}");
        assert_eq!(v["scope"], "email");
        assert_eq!(
            s.subject_seen_upstream(answer.access_token()).await,
            REPORTS.id
        );
        s.token(
            REPORTS,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "email.send"),
            ],
        )
        .await
        .assert_error(400, "invalid_scope");
        assert_eq!(issued(&s, "client_credentials").await, 1);
    }
}

fn password_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "password"),
        ("username", USER),
        ("password", PASSWORD),
        ("scope", "email"),
    ]
}

#[tokio::test]
async fn password_grant_is_refused_when_switched_off() {
    let s = server().await;
    s.token(CLI_APP, &password_form())
        .await
        .assert_error(400, "unsupported_grant_type");
    let logins = s
        .counter("tollgate_logins_total", "result", "success")
        .await;
    assert_eq!(logins, 0, "the password was not even checked");
}

#[tokio::test]
async fn password_grant_works_when_switched_on() {
    let s = AuthConfig::default()
        .allow_password_grant(true)
        .spawn()
        .await;
    let answer = s.token(CLI_APP, &password_form()).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let v = s.verify(answer.access_token()).await;
    assert_eq!(v["username"], USER);
    assert_eq!(v["sub"], USER);
    assert_eq!(v["client_id"], CLI_APP.id);
    assert_eq!(s.subject_seen_upstream(answer.access_token()).await, USER);
    let refreshed = s.refresh(CLI_APP, answer.refresh_token(), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.json);

    let mut wrong = password_form();
    wrong[2] = ("password", "not-the-password");
    s.token(CLI_APP, &wrong)
        .await
        .assert_error(400, "invalid_grant");
    // Only clients registered for it may use it.
    s.token(MAIL_APP, &password_form())
        .await
        .assert_error(400, "unauthorized_client");
    assert_eq!(issued(&s, "password").await, 1);
}

#[tokio::test]
async fn codes_and_refresh_tokens_are_not_bearer_tokens() {
    let s = server().await;
    let (request, code) = code(&s, "email").await;
    assert_eq!(s.call("/api/mail/inbox", &code).await.0, 401, "a code");
    let tokens = s.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(tokens.status, 200, "{}", tokens.json);
    let refresh = tokens.refresh_token();
    assert_eq!(
        s.call("/api/mail/inbox", refresh).await.0,
        401,
        "a refresh token"
    );
    // Nor is an access token a refresh token.
    s.refresh(MAIL_APP, tokens.access_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn expired_access_token_is_refused_even_when_cached() {
    let s = AuthConfig::default().access_token_ttl("2s").spawn().await;
    let tokens = s.tokens("email").await;
    let access = tokens.access_token();
    assert_eq!(tokens.json["expires_in"], 2);
    let exp = s.verify(access).await["exp"].as_u64().expect("exp");
    // Cached as allowed while it is live.
    assert_eq!(s.subject_seen_upstream(access).await, USER);
    for _ in 0..50 {
        if now() >= exp {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now() >= exp, "the token's exp has passed");
    let (status, body) = s.call("/api/mail/inbox", access).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.verify(access).await, json!({"active": false}));
    assert_eq!(s.up.hits(), 1);
}

// ---------------------------------------------------------------- revoke, verify

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_access_tokens() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let tokens = s.tokens("email").await;
        let access = tokens.access_token();
        assert_eq!(s.subject_seen_upstream(access).await, USER);
        let revoked = s.revoke(MAIL_APP, tokens.refresh_token()).await;
        assert_eq!(revoked.status, 200, "{}", revoked.json);
        assert_eq!(revoked.header("cache-control"), Some("no-store"));
        assert_dead(&s, access, "access token of a revoked refresh token").await;
        s.refresh(MAIL_APP, tokens.refresh_token(), None)
            .await
            .assert_error(400, "invalid_grant");
    }
}

#[tokio::test]
async fn only_the_owning_client_can_revoke_and_unknown_tokens_revoke_quietly() {
    let s = server().await;
    let tokens = s.tokens("email").await;
    let refused = s.revoke(OTHER_APP, tokens.access_token()).await;
    assert!(refused.status.is_client_error(), "{}", refused.json);
    assert!(refused.error().is_some(), "{}", refused.json);
    assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
    let unknown = s.revoke(MAIL_APP, "never-issued").await;
    assert_eq!(unknown.status, 200, "RFC 7009 §2.2: {}", unknown.json);
    let impostor = Client {
        id: MAIL_APP.id,
        secret: Some("not-the-secret"),
    };
    let refused = s.revoke(impostor, tokens.access_token()).await;
    refused.assert_error(401, "invalid_client");
    assert!(
        refused.header("www-authenticate").is_some(),
        "Basic was tried"
    );
    assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
}

#[tokio::test]
async fn verify_refuses_clients_without_introspect() {
    let s = server().await;
    let tokens = s.tokens("email").await;
    let access = tokens.access_token();
    let not_allowed = s.verify_as(MAIL_APP, access).await;
    assert_eq!(not_allowed.status, 401, "{}", not_allowed.json);
    assert!(
        not_allowed.json.get("active").is_none(),
        "{}",
        not_allowed.json
    );
    let wrong_secret = Client {
        id: RESOURCE_SERVER.id,
        secret: Some("not-the-secret"),
    };
    let refused = s.verify_as(wrong_secret, access).await;
    assert_eq!(refused.status, 401, "{}", refused.json);
    assert!(
        refused.header("www-authenticate").is_some(),
        "Basic was tried"
    );
    let anonymous = s
        .http
        .post(s.gw.internal_url("/verify"))
        .form(&[("token", access)])
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(s.verify_as(RESOURCE_SERVER, access).await.status, 200);
}

#[tokio::test]
async fn verify_describes_live_access_tokens_and_nothing_else() {
    let s = server().await;
    let tokens = s.tokens("email email.send").await;
    let access = tokens.access_token();
    let before = now();
    let v = s.verify(access).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], MAIL_APP.id);
    assert_eq!(v["username"], USER);
    assert_eq!(v["sub"], USER);
    assert_eq!(v["token_type"], "Bearer");
    let mut scopes: Vec<&str> = v["scope"].as_str().expect("scope").split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["email", "email.send"]);
    let iat = v["iat"].as_u64().expect("iat");
    let exp = v["exp"].as_u64().expect("exp");
    assert!(
        iat <= before && iat + 60 >= before,
        "iat {iat} vs now {before}"
    );
    assert_eq!(
        exp - iat,
        tokens.json["expires_in"].as_u64().expect("expires_in")
    );

    let inactive = json!({"active": false});
    assert_eq!(s.verify("never-issued").await, inactive);
    assert_eq!(
        s.verify(tokens.refresh_token()).await,
        inactive,
        "refresh tokens are not bearer tokens"
    );
    assert_eq!(s.revoke(MAIL_APP, access).await.status, 200);
    assert_eq!(s.verify(access).await, inactive);
}

// ---------------------------------------------------------------- metadata

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("strings"))
        .collect()
}

async fn metadata(s: &AuthServer) -> Value {
    let r = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON metadata")
}

#[tokio::test]
async fn metadata_lists_only_what_is_switched_on() {
    let off = server().await;
    let m = metadata(&off).await;
    let grants = strings(&m["grant_types_supported"]);
    let responses = strings(&m["response_types_supported"]);
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.contains(&g), "{g}: {m}");
    }
    assert!(!grants.contains(&"password"), "{m}");
    assert!(!grants.contains(&"implicit"), "{m}");
    assert_eq!(responses, ["code"], "{m}");
    let mut scopes = strings(&m["scopes_supported"]);
    scopes.sort();
    assert_eq!(scopes, ["email", "email.send"]);
    assert_eq!(strings(&m["code_challenge_methods_supported"]), ["S256"]);
    for (key, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        let url = m[key].as_str().unwrap_or_else(|| panic!("{key}: {m}"));
        assert!(url.ends_with(path), "{key}: {url}");
    }

    let on = AuthConfig::default()
        .allow_password_grant(true)
        .allow_implicit(true)
        .spawn()
        .await;
    let m = metadata(&on).await;
    let grants = strings(&m["grant_types_supported"]);
    let responses = strings(&m["response_types_supported"]);
    assert!(grants.contains(&"password"), "{m}");
    assert!(grants.contains(&"implicit"), "{m}");
    assert!(responses.contains(&"token"), "{m}");
    assert!(responses.contains(&"code"), "{m}");
}

// ---------------------------------------------------------------- persistence

#[tokio::test]
async fn tokens_survive_a_restart_on_the_same_sqlite_file() {
    let s = AuthConfig::default()
        .store("sqlite:tollgate.db")
        .spawn()
        .await;
    let tokens = s.tokens("email").await;
    assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
    let revoked = s.tokens("email").await;
    assert_eq!(
        s.revoke(MAIL_APP, revoked.refresh_token()).await.status,
        200
    );
    let db = s.gw.dir.path().join("tollgate.db");
    assert!(db.exists(), "the store is the file {}", db.display());

    let s = s.restart().await;
    assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
    let refreshed = s.refresh(MAIL_APP, tokens.refresh_token(), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.json);
    assert_eq!(
        s.subject_seen_upstream(refreshed.access_token()).await,
        USER
    );
    // What was revoked before the restart stays revoked.
    assert_dead(&s, revoked.access_token(), "revoked before the restart").await;
    s.refresh(MAIL_APP, revoked.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
}
