//! The browser side of the authorization server, driven over HTTP as a person's browser
//! would: authorize → login page → consent page → redirect to the client, then the code
//! exchange and the token at the gateway. Also the pages' protections (framing, caching,
//! cookies, CSRF) and how bad authorization requests are answered.

use crate::common::oauth::{
    fragment_params, is_redirect_to, query_params, AuthConfig, AuthRequest, AuthServer, Browser,
    Page, TestStore, EMAIL_TEXT, MAIL_APP, OTHER_APP, PASSWORD, PUBLIC_APP, REDIRECT_URI,
    SEND_TEXT, SPA_REDIRECT_URI, USER, USER_NAME,
};

async fn server() -> AuthServer {
    AuthConfig::default().spawn().await
}

/// Asserts `page` is an HTML error page (4xx), not a redirect anywhere.
#[track_caller]
fn assert_error_page(page: &Page, what: &str) {
    assert!(page.status.is_client_error(), "{what}: {}", page.status);
    assert!(page.header("location").is_none(), "{what}: redirected");
    assert!(page.is_html(), "{what}: {:?}", page.header("content-type"));
    assert_eq!(page.post_forms(), 0, "{what}: an error page has no form");
}

/// Asserts `page` redirects to the client's [`REDIRECT_URI`] with `error` and `state`.
#[track_caller]
fn assert_error_redirect(page: &Page, error: &str, state: &str, what: &str) {
    assert_eq!(page.status, 302, "{what}: {}", page.body);
    let to = page.location().expect("a Location");
    assert!(is_redirect_to(&to, REDIRECT_URI), "{what}: to {to}");
    let params = query_params(&to);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some(error),
        "{what}: {to}"
    );
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(state),
        "{what}: {to}"
    );
    assert!(!params.contains_key("code"), "{what}: {to}");
}

/// Asserts a page carries the headers that keep it out of caches and frames.
#[track_caller]
fn assert_not_cached_or_framed(page: &Page, what: &str) {
    assert_eq!(page.header("cache-control"), Some("no-store"), "{what}");
    let xfo_deny = page
        .header("x-frame-options")
        .is_some_and(|v| v.eq_ignore_ascii_case("deny"));
    let csp_none = page
        .header("content-security-policy")
        .is_some_and(|v| v.contains("frame-ancestors 'none'"));
    assert!(xfo_deny || csp_none, "{what}: framing allowed");
}

#[tokio::test]
async fn code_flow_issues_tokens_that_pass_the_gateway_until_revoked() {
    // One set of tests for every store (issue 9).
    for store in TestStore::ALL {
        eprintln!("store: {store:?}");
        let s = AuthConfig::default().on(store).spawn().await;
        let browser = Browser::new();
        let request = AuthRequest::code(MAIL_APP, "email email.send");

        // /oauth/authorize sends a new browser to the login page.
        let first = browser.get(&request.url(&s)).await;
        assert_eq!(first.status, 302, "{}", first.body);
        let login = browser.follow(first).await;
        assert_eq!(login.status, 200);
        assert!(login.url.path().ends_with("/oauth/login"), "{}", login.url);
        let form = login.form();
        assert!(form.inputs.contains(&"username".to_string()), "{form:?}");
        assert!(form.inputs.contains(&"password".to_string()), "{form:?}");
        assert!(
            form.hidden.iter().any(|(_, v)| v.len() >= 20),
            "a hidden CSRF field: {form:?}"
        );

        // The right password leads to the consent page, naming the client and each scope.
        let consent = browser.log_in(&login, USER, PASSWORD).await;
        assert_eq!(consent.status, 200, "{}", consent.body);
        assert!(
            consent.url.path().ends_with("/oauth/consent"),
            "{}",
            consent.url
        );
        let text = consent.text();
        assert!(text.contains("Awesome Mail"), "{text}");
        assert!(
            !text.contains(MAIL_APP.id),
            "named by its name, not id: {text}"
        );
        assert!(text.contains(EMAIL_TEXT), "{text}");
        assert!(text.contains(SEND_TEXT), "{text}");
        let buttons = consent.form().buttons;
        assert!(
            buttons.contains(&("decision".into(), "approve".into())),
            "{buttons:?}"
        );
        assert!(
            buttons.contains(&("decision".into(), "deny".into())),
            "{buttons:?}"
        );

        // Approve: back to the registered redirect URI with a code and the same state.
        let done = browser.decide(&consent, "approve").await;
        assert_eq!(done.status, 302, "{}", done.body);
        let to = done.location().expect("redirect to the client");
        assert!(is_redirect_to(&to, REDIRECT_URI), "{to}");
        let params = query_params(&to);
        assert_eq!(
            params.get("state").map(String::as_str),
            Some(request.state())
        );
        let code = params.get("code").expect("a code");

        // The code exchange.
        let tokens = s.exchange(MAIL_APP, code, request.verifier()).await;
        assert_eq!(tokens.status, 200, "{}", tokens.json);
        assert_eq!(tokens.header("cache-control"), Some("no-store"));
        assert_eq!(tokens.json["token_type"], "Bearer");
        assert!(
            tokens.json["expires_in"].as_u64().is_some_and(|n| n > 0),
            "{}",
            tokens.json
        );
        let access = tokens.access_token().to_string();
        assert!(access.len() >= 43, "256 random bits: {access}");
        assert_ne!(tokens.refresh_token(), access);

        // The token passes the gateway, which tells the upstream who the user is.
        assert_eq!(s.subject_seen_upstream(&access).await, USER);
        assert_eq!(s.up.hits(), 1);

        // Revocation takes effect at once, though the verdict is cached.
        let revoked = s.revoke(MAIL_APP, &access).await;
        assert_eq!(revoked.status, 200, "{}", revoked.json);
        let (status, body) = s.call("/api/mail/inbox", &access).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(s.up.hits(), 1, "nothing more reached the upstream");
    }
}

#[tokio::test]
async fn logged_in_browser_goes_straight_to_consent() {
    let s = server().await;
    let browser = Browser::new();
    let first = AuthRequest::code(MAIL_APP, "email");
    browser.code(&s, &first).await;

    let second = browser
        .get(&AuthRequest::code(MAIL_APP, "email").url(&s))
        .await;
    assert_eq!(second.status, 302, "{}", second.body);
    let to = second.location().expect("a redirect");
    assert!(
        to.path().ends_with("/oauth/consent"),
        "not asked to log in again: {to}"
    );
    let consent = browser.follow(second).await;
    assert_eq!(consent.status, 200);
    assert!(!consent.form().inputs.contains(&"password".to_string()));
    assert!(consent.text().contains(USER_NAME), "{}", consent.text());

    // Another browser (another cookie jar) is not logged in.
    let stranger = Browser::new()
        .get(&AuthRequest::code(MAIL_APP, "email").url(&s))
        .await;
    let to = stranger.location().expect("a redirect");
    assert!(to.path().ends_with("/oauth/login"), "{to}");
}

#[tokio::test]
async fn consent_page_names_a_client_without_a_name_by_its_id() {
    let s = server().await;
    let consent = Browser::new()
        .consent_page(&s, &AuthRequest::code(OTHER_APP, "email"))
        .await;
    let text = consent.text();
    assert!(text.contains(OTHER_APP.id), "{text}");
    assert!(text.contains(EMAIL_TEXT), "{text}");
    assert!(!text.contains(SEND_TEXT), "only the scopes asked: {text}");
}

#[tokio::test]
async fn login_consent_and_error_pages_forbid_framing_and_caching() {
    let s = server().await;
    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let login = browser.open(&request.url(&s)).await;
    assert_eq!(login.status, 200);
    assert_not_cached_or_framed(&login, "login page");
    let failed = browser.log_in(&login, USER, "not-the-password").await;
    assert_not_cached_or_framed(&failed, "failed login page");
    let consent = browser.log_in(&failed, USER, PASSWORD).await;
    assert!(consent.url.path().ends_with("/oauth/consent"));
    assert_not_cached_or_framed(&consent, "consent page");
    let error = browser
        .get(&request.clone().set("client_id", "nobody").url(&s))
        .await;
    assert_error_page(&error, "unknown client");
    assert_not_cached_or_framed(&error, "error page");
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site_lax() {
    let s = server().await;
    let browser = Browser::new();
    let login = browser
        .open(&AuthRequest::code(MAIL_APP, "email").url(&s))
        .await;
    let form = login.form();
    let fields = form.fill(&[("username", USER), ("password", PASSWORD)]);
    let answer = browser.post(&form.action, &fields).await;
    assert!(answer.status.is_redirection(), "{}", answer.status);
    let cookies = answer.set_cookies();
    let set: Vec<&String> = cookies
        .iter()
        .filter(|c| !c.contains("Max-Age=0"))
        .collect();
    assert!(!set.is_empty(), "a session cookie is set: {cookies:?}");
    for c in cookies.iter().chain(login.set_cookies().iter()) {
        let attributes: Vec<String> = c
            .split(';')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert!(attributes.iter().any(|a| a == "httponly"), "{c}");
        assert!(attributes.iter().any(|a| a == "samesite=lax"), "{c}");
    }
}

#[tokio::test]
async fn wrong_password_shows_the_login_form_again_without_a_session() {
    let s = server().await;
    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let login = browser.open(&request.url(&s)).await;
    assert!(
        login.texts("[role=alert]").is_empty(),
        "no message before trying"
    );

    let failed = browser.log_in(&login, USER, "not-the-password").await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let form = failed.form();
    assert!(
        form.inputs.contains(&"password".to_string()),
        "the form again: {form:?}"
    );
    let alerts = failed.texts("[role=alert]");
    assert_eq!(alerts.len(), 1, "one message: {}", failed.body);
    assert!(!alerts[0].is_empty());

    // No session: the next authorization request still goes to the login page.
    let again = browser.get(&request.url(&s)).await;
    let to = again.location().expect("a redirect");
    assert!(to.path().ends_with("/oauth/login"), "{to}");

    // The form shown again still works.
    let consent = browser.log_in(&failed, USER, PASSWORD).await;
    assert!(
        consent.url.path().ends_with("/oauth/consent"),
        "{}",
        consent.url
    );
}

#[tokio::test]
async fn unknown_user_gets_the_same_message_as_a_wrong_password() {
    let s = server().await;
    let browser = Browser::new();
    let login = browser
        .open(&AuthRequest::code(MAIL_APP, "email").url(&s))
        .await;
    let wrong_password = browser.log_in(&login, USER, "not-the-password").await;
    let unknown_user = browser.log_in(&login, "mallory", PASSWORD).await;
    assert_eq!(unknown_user.status, wrong_password.status);
    let message = wrong_password.texts("[role=alert]");
    assert_eq!(message.len(), 1, "{}", wrong_password.body);
    assert_eq!(unknown_user.texts("[role=alert]"), message);
    assert!(unknown_user.form().inputs.contains(&"password".to_string()));
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_state() {
    let s = server().await;
    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let consent = browser.consent_page(&s, &request).await;
    let done = browser.decide(&consent, "deny").await;
    assert_error_redirect(&done, "access_denied", request.state(), "deny");
}

#[tokio::test]
async fn unknown_client_gets_an_error_page_not_a_redirect() {
    let s = server().await;
    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let unknown = browser
        .get(&request.clone().set("client_id", "nobody").url(&s))
        .await;
    assert_error_page(&unknown, "unknown client");
    let missing = browser.get(&request.without("client_id").url(&s)).await;
    assert_error_page(&missing, "no client_id");
}

#[tokio::test]
async fn unregistered_or_look_alike_redirect_uri_gets_an_error_page_not_a_redirect() {
    let s = server().await;
    let browser = Browser::new();
    for (uri, what) in [
        ("http://127.0.0.1:7666/evil", "unregistered"),
        ("http://127.0.0.1:7000/redirect/extra", "extra path"),
        ("http://127.0.0.1:7001/redirect", "different port"),
        (
            "http://127.0.0.1:7000/REDIRECT",
            "different case in the path",
        ),
        (
            "HTTP://127.0.0.1:7000/redirect",
            "different case in the scheme",
        ),
        ("http://127.0.0.1:7000/redirect?next=evil", "added query"),
        ("http://127.0.0.1:7000/redirect/", "trailing slash"),
        ("http://127.0.0.1:7000/redirect#x", "fragment"),
    ] {
        let request = AuthRequest::code(MAIL_APP, "email").set("redirect_uri", uri);
        let page = browser.get(&request.url(&s)).await;
        assert_error_page(&page, what);
        // Even an otherwise broken request must not bounce to that URI.
        let broken = request.without("response_type");
        assert_error_page(&browser.get(&broken.url(&s)).await, what);
    }
}

#[tokio::test]
async fn bad_request_with_a_proven_redirect_uri_redirects_with_error_and_state() {
    let s = server().await;
    let browser = Browser::new();
    let base = AuthRequest::code(MAIL_APP, "email");
    let verifier = base.verifier().to_string();
    for (request, error, what) in [
        (
            base.clone().without("response_type"),
            "invalid_request",
            "missing response_type",
        ),
        (
            base.clone().set("response_type", "id_token"),
            "unsupported_response_type",
            "unknown response_type",
        ),
        (
            base.clone().repeat("scope", "email"),
            "invalid_request",
            "duplicate scope",
        ),
        (
            base.clone().repeat("response_type", "code"),
            "invalid_request",
            "duplicate response_type",
        ),
        (
            base.clone().set("scope", "email admin"),
            "invalid_scope",
            "unknown scope",
        ),
        (
            AuthRequest::code(OTHER_APP, "email email.send"),
            "invalid_scope",
            "scope the client may not have",
        ),
        (
            base.clone()
                .set("code_challenge", &verifier)
                .set("code_challenge_method", "plain"),
            "invalid_request",
            "PKCE plain",
        ),
        (
            base.clone().without("code_challenge_method"),
            "invalid_request",
            "PKCE method missing (plain by default)",
        ),
    ] {
        let page = browser.get(&request.url(&s)).await;
        assert_error_redirect(&page, error, request.state(), what);
    }
}

#[tokio::test]
async fn public_client_without_pkce_is_refused_by_redirect() {
    let s = server().await;
    let request = AuthRequest::code(PUBLIC_APP, "email")
        .without("code_challenge")
        .without("code_challenge_method");
    let page = Browser::new().get(&request.url(&s)).await;
    assert_error_redirect(
        &page,
        "invalid_request",
        request.state(),
        "public client without PKCE",
    );
}

#[tokio::test]
async fn public_client_with_pkce_gets_tokens_without_a_secret() {
    let s = server().await;
    let request = AuthRequest::code(PUBLIC_APP, "email");
    let code = Browser::new().code(&s, &request).await;
    let without_verifier = s
        .token(
            PUBLIC_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
        )
        .await;
    without_verifier.assert_error(400, "invalid_grant");
    let tokens = s.exchange(PUBLIC_APP, &code, request.verifier()).await;
    assert_eq!(tokens.status, 200, "{}", tokens.json);
    assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
}

#[tokio::test]
async fn login_post_without_csrf_field_is_refused_without_a_session() {
    let s = server().await;
    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let login = browser.open(&request.url(&s)).await;
    let form = login.form();
    assert!(!form.hidden.is_empty(), "{form:?}");
    let fields = form.fill_without_hidden(&[("username", USER), ("password", PASSWORD)]);
    let refused = browser.post(&form.action, &fields).await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert!(refused.header("location").is_none());
    assert!(
        refused.set_cookies().iter().all(|c| !c.contains("session")),
        "{:?}",
        refused.set_cookies()
    );
    let again = browser.get(&request.url(&s)).await;
    let to = again.location().expect("a redirect");
    assert!(to.path().ends_with("/oauth/login"), "no session: {to}");
    assert_eq!(
        s.counter("tollgate_logins_total", "result", "success")
            .await,
        0
    );
}

#[tokio::test]
async fn login_post_with_another_browsers_csrf_token_is_refused() {
    let s = server().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let attacker = Browser::new();
    let attacker_form = attacker.open(&request.url(&s)).await.form();
    let victim = Browser::new();
    let victim_form = victim.open(&request.url(&s)).await.form();
    assert_ne!(
        attacker_form.hidden, victim_form.hidden,
        "each browser has its own token"
    );

    let fields = victim_form.fill_with_hidden_of(
        &attacker_form,
        &[("username", USER), ("password", PASSWORD)],
    );
    let refused = victim.post(&victim_form.action, &fields).await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert!(refused.header("location").is_none());
    let again = victim.get(&request.url(&s)).await;
    assert!(again
        .location()
        .expect("a redirect")
        .path()
        .ends_with("/oauth/login"));
}

/// Logs a fresh browser in and returns it with its consent page.
async fn at_consent(s: &AuthServer, request: &AuthRequest) -> (Browser, Page) {
    let browser = Browser::new();
    let consent = browser.consent_page(s, request).await;
    (browser, consent)
}

#[tokio::test]
async fn consent_post_without_csrf_token_issues_no_code() {
    let s = server().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let (browser, consent) = at_consent(&s, &request).await;
    let form = consent.form();
    assert!(!form.hidden.is_empty(), "{form:?}");
    let refused = browser
        .post(
            &form.action,
            &form.fill_without_hidden(&[("decision", "approve")]),
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert!(
        refused.header("location").is_none(),
        "no code: {:?}",
        refused.location()
    );
    // The real form still works.
    let done = browser.decide(&consent, "approve").await;
    assert!(query_params(&done.location().expect("redirect")).contains_key("code"));
}

#[tokio::test]
async fn consent_post_with_another_sessions_csrf_token_issues_no_code() {
    let s = server().await;
    let request = AuthRequest::code(MAIL_APP, "email");
    let (_, attacker_consent) = at_consent(&s, &request).await;
    let (victim, victim_consent) = at_consent(&s, &request).await;
    let attacker_form = attacker_consent.form();
    let victim_form = victim_consent.form();
    assert_ne!(
        attacker_form.hidden, victim_form.hidden,
        "each session has its own token"
    );
    let fields = victim_form.fill_with_hidden_of(&attacker_form, &[("decision", "approve")]);
    let refused = victim.post(&victim_form.action, &fields).await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert!(
        refused.header("location").is_none(),
        "no code: {:?}",
        refused.location()
    );
    let issued = s
        .counter(
            "tollgate_tokens_issued_total",
            "grant_type",
            "authorization_code",
        )
        .await;
    assert_eq!(issued, 0);
}

#[tokio::test]
async fn implicit_grant_returns_the_token_in_the_fragment_when_switched_on() {
    let s = AuthConfig::default().allow_implicit(true).spawn().await;
    let request = AuthRequest::implicit("email");
    let to = Browser::new().approve(&s, &request).await;
    assert!(is_redirect_to(&to, SPA_REDIRECT_URI), "{to}");
    assert!(to.query().is_none(), "nothing in the query: {to}");
    let params = fragment_params(&to);
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(request.state())
    );
    assert_eq!(params.get("token_type").map(String::as_str), Some("Bearer"));
    assert!(!params.contains_key("refresh_token"), "{to}");
    let access = params.get("access_token").expect("a token in the fragment");
    assert_eq!(s.subject_seen_upstream(access).await, USER);
}

#[tokio::test]
async fn implicit_grant_is_refused_when_switched_off() {
    let s = server().await;
    let request = AuthRequest::implicit("email");
    let page = Browser::new().get(&request.url(&s)).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let to = page.location().expect("a redirect");
    assert!(is_redirect_to(&to, SPA_REDIRECT_URI), "{to}");
    let params = fragment_params(&to);
    assert_eq!(
        params.get("error").map(String::as_str),
        Some("unsupported_response_type")
    );
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(request.state())
    );
    assert!(!params.contains_key("access_token"));
}

#[tokio::test]
async fn logins_and_issued_tokens_are_counted_in_metrics() {
    let s = server().await;
    assert_eq!(
        s.counter("tollgate_logins_total", "result", "success")
            .await,
        0
    );

    let browser = Browser::new();
    let request = AuthRequest::code(MAIL_APP, "email");
    let login = browser.open(&request.url(&s)).await;
    let failed = browser.log_in(&login, USER, "not-the-password").await;
    browser.log_in(&failed, "mallory", "whatever").await;
    let code = browser.code(&s, &request).await;
    let tokens = s.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(tokens.status, 200);
    // A second user flow in another browser: two successes in all.
    s.tokens("email").await;

    let logins = |result| s.counter("tollgate_logins_total", "result", result);
    assert_eq!(logins("success").await, 2);
    assert_eq!(logins("failure").await, 2);
    let issued = |grant| s.counter("tollgate_tokens_issued_total", "grant_type", grant);
    assert_eq!(issued("authorization_code").await, 2);
    assert_eq!(issued("refresh_token").await, 0);
    // The authorization server's own requests are counted under route="_oauth".
    let text = s.gw.metrics().await;
    let token_oks = crate::common::metric(
        &text,
        "tollgate_requests_total{route=\"_oauth\",status=\"200\"}",
    );
    assert!(token_oks.unwrap_or(0.0) >= 2.0, "{text}");
    let redirects = crate::common::metric(
        &text,
        "tollgate_requests_total{route=\"_oauth\",status=\"302\"}",
    );
    assert!(redirects.unwrap_or(0.0) >= 2.0, "{text}");
}

#[tokio::test]
async fn failed_login_shows_the_typed_username_escaped() {
    let s = server().await;
    let browser = Browser::new();
    let login = browser
        .open(&AuthRequest::code(MAIL_APP, "email").url(&s))
        .await;
    let typed = r#""><script>alert(1)</script><b x=""#;
    let failed = browser.log_in(&login, typed, "not-the-password").await;
    assert_eq!(failed.status, 200);
    assert!(failed.texts("script").is_empty(), "{}", failed.body);
    assert!(failed.texts("b").is_empty(), "{}", failed.body);
    assert!(!failed.body.contains("<script>"), "{}", failed.body);
}

#[tokio::test]
async fn state_with_special_characters_comes_back_unchanged() {
    let s = server().await;
    let state = "a b&c=d/é\"'<>#%+;?";
    let request = AuthRequest::code(MAIL_APP, "email").set("state", state);
    let code = Browser::new().code(&s, &request).await;
    let tokens = s.exchange(MAIL_APP, &code, request.verifier()).await;
    assert_eq!(tokens.status, 200, "{}", tokens.json);

    let denied = AuthRequest::code(MAIL_APP, "email").set("state", state);
    let browser = Browser::new();
    let consent = browser.consent_page(&s, &denied).await;
    let done = browser.decide(&consent, "deny").await;
    assert_error_redirect(&done, "access_denied", state, "deny with an odd state");
}
