//! The login form's CSRF protection is bound to the browser: only a cookie the server
//! issued counts, the form field must be derived from this browser's cookie, and a login
//! session is honoured only in the browser it was made in. Over HTTPS the browser cookie is
//! `__Host-` prefixed (so no other host can plant it) and the session cookie `__Secure-`.
//! Each case runs over plain HTTP and over the TLS listener.

use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, MAIL_APP, PASSWORD, USER,
};
use reqwest::StatusCode;

/// The browser-id and session cookie names over HTTPS (`tls`) or plain HTTP.
fn names(tls: bool) -> (&'static str, &'static str) {
    if tls {
        ("__Host-tollgate_csrf", "__Secure-tollgate_session")
    } else {
        ("tollgate_csrf", "tollgate_session")
    }
}

/// `request`'s query on another `/oauth/` page (`login`, `consent`).
fn page_url(s: &AuthServer, request: &AuthRequest, page: &str) -> String {
    request
        .url(s)
        .replace("/oauth/authorize?", &format!("/oauth/{page}?"))
}

/// The value of cookie `name` among `Set-Cookie` headers.
fn cookie_value(set_cookies: &[String], name: &str) -> String {
    set_cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no {name} in {set_cookies:?}"))
        .to_string()
}

/// The attributes of the `Set-Cookie` for `name`, lower-cased.
fn attributes(set_cookies: &[String], name: &str) -> Vec<String> {
    let c = set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {set_cookies:?}"));
    c.split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// Posts the login form with the right password, `cookie` as the only cookie and
/// `field` as the CSRF field; returns the status and whether a session was started.
async fn post_login(
    s: &AuthServer,
    request: &AuthRequest,
    cookie: &str,
    field: &str,
) -> (StatusCode, bool) {
    let r = s
        .http
        .post(page_url(s, request, "login"))
        .header("cookie", cookie)
        .form(&[
            ("username", USER),
            ("password", PASSWORD),
            ("csrf_token", field),
        ])
        .send()
        .await
        .expect("login POST sent");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().is_ok_and(|c| c.contains("session")));
    (r.status(), session)
}

#[tokio::test]
async fn planted_or_foreign_csrf_values_are_refused_over_http_and_https() {
    for tls in [false, true] {
        let s = AuthConfig::default().tls(tls).spawn().await;
        let (csrf_cookie, _) = names(tls);
        let request = AuthRequest::code(MAIL_APP, "email");
        let attacker = Browser::for_server(&s);
        let attacker_page = attacker.open(&request.url(&s)).await;
        let attacker_cookie = cookie_value(&attacker_page.set_cookies(), csrf_cookie);
        let attacker_field = attacker_page.form().hidden[0].1.clone();
        let victim = Browser::for_server(&s);
        let victim_page = victim.open(&request.url(&s)).await;
        let victim_cookie = cookie_value(&victim_page.set_cookies(), csrf_cookie);

        let planted = tollgate::secrets::random_token();
        let cases = [
            // Cookie tossing: a value the server never issued, repeated in the field.
            (
                planted.clone(),
                planted.clone(),
                "planted cookie, matching field",
            ),
            // An issued cookie with a field made from its own text.
            (
                victim_cookie.clone(),
                victim_cookie.clone(),
                "cookie repeated as the field",
            ),
            // This browser's cookie with a field from another browser's page.
            (
                victim_cookie.clone(),
                attacker_field.clone(),
                "another browser's field",
            ),
            // An issued cookie whose signature was moved to another id.
            (
                format!(
                    "{planted}.{}",
                    attacker_cookie.split_once('.').expect("id.tag").1
                ),
                attacker_field.clone(),
                "forged signature",
            ),
        ];
        for (cookie, field, what) in cases {
            let (status, session) =
                post_login(&s, &request, &format!("{csrf_cookie}={cookie}"), &field).await;
            assert_eq!(status, 403, "tls={tls}: {what}");
            assert!(!session, "tls={tls}: {what}: no session");
        }
        // The same request with the attacker's own pair is the real form: it works.
        let (status, session) = post_login(
            &s,
            &request,
            &format!("{csrf_cookie}={attacker_cookie}"),
            &attacker_field,
        )
        .await;
        assert_eq!(
            (status, session),
            (StatusCode::SEE_OTHER, true),
            "tls={tls}"
        );
        assert_eq!(
            s.counter("tollgate_logins_total", "result", "success")
                .await,
            1,
            "tls={tls}: only the real form reached the password check"
        );
    }
}

#[tokio::test]
async fn the_login_flow_works_over_http_and_https_with_prefixed_cookies_under_tls() {
    for tls in [false, true] {
        let s = AuthConfig::default().tls(tls).spawn().await;
        let (csrf_cookie, session_cookie) = names(tls);
        let browser = Browser::for_server(&s);
        let request = AuthRequest::code(MAIL_APP, "email");
        let login = browser.open(&request.url(&s)).await;
        assert_eq!(login.status, 200, "tls={tls}: {}", login.body);
        let csrf = attributes(&login.set_cookies(), csrf_cookie);
        let form = login.form();
        let answer = browser
            .post(
                &form.action,
                &form.fill(&[("username", USER), ("password", PASSWORD)]),
            )
            .await;
        assert_eq!(answer.status, 303, "tls={tls}: {}", answer.body);
        let session = attributes(&answer.set_cookies(), session_cookie);
        for attrs in [&csrf, &session] {
            assert!(attrs.contains(&"httponly".to_string()), "{attrs:?}");
            assert!(attrs.contains(&"samesite=lax".to_string()), "{attrs:?}");
            assert_eq!(attrs.contains(&"secure".to_string()), tls, "{attrs:?}");
            assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{attrs:?}");
        }
        // `__Host-` requires `Path=/`; the session stays under /oauth so session ids
        // never travel to the APIs behind the gateway.
        let csrf_path = if tls { "path=/" } else { "path=/oauth" };
        assert!(csrf.contains(&csrf_path.to_string()), "{csrf:?}");
        assert!(session.contains(&"path=/oauth".to_string()), "{session:?}");

        let consent = browser.follow(answer).await;
        assert_eq!(consent.status, 200, "tls={tls}: {}", consent.body);
        let done = browser.decide(&consent, "approve").await;
        let to = done.location().expect("a redirect to the client");
        let code = to
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("a code");
        let tokens = s.exchange(MAIL_APP, &code, request.verifier()).await;
        assert_eq!(tokens.status, 200, "tls={tls}: {}", tokens.json);
        assert_eq!(s.subject_seen_upstream(tokens.access_token()).await, USER);
    }
}

#[tokio::test]
async fn a_session_cookie_from_another_browser_is_not_honoured() {
    for tls in [false, true] {
        let s = AuthConfig::default().tls(tls).spawn().await;
        let (csrf_cookie, session_cookie) = names(tls);
        let request = AuthRequest::code(MAIL_APP, "email");
        // The attacker signs in and keeps their session id.
        let attacker = Browser::for_server(&s);
        let login = attacker.open(&request.url(&s)).await;
        let attacker_browser = cookie_value(&login.set_cookies(), csrf_cookie);
        let form = login.form();
        let answer = attacker
            .post(
                &form.action,
                &form.fill(&[("username", USER), ("password", PASSWORD)]),
            )
            .await;
        let attacker_session = cookie_value(&answer.set_cookies(), session_cookie);
        // The victim's browser has its own browser id.
        let victim = Browser::for_server(&s).open(&request.url(&s)).await;
        let victim_browser = cookie_value(&victim.set_cookies(), csrf_cookie);

        let consent = |cookies: String| {
            let url = page_url(&s, &request, "consent");
            let http = s.http.clone();
            async move {
                let r = http.get(url).header("cookie", cookies).send().await;
                r.expect("consent GET sent").status()
            }
        };
        let tossed = format!("{csrf_cookie}={victim_browser}; {session_cookie}={attacker_session}");
        assert_eq!(
            consent(tossed).await,
            302,
            "tls={tls}: sent to the login page"
        );
        let alone = format!("{session_cookie}={attacker_session}");
        assert_eq!(consent(alone).await, 302, "tls={tls}: no browser id");
        let own = format!("{csrf_cookie}={attacker_browser}; {session_cookie}={attacker_session}");
        assert_eq!(consent(own).await, 200, "tls={tls}: in its own browser");
    }
}
