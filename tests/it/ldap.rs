//! LDAP users against a real slapd: both bind modes, wrong and empty passwords, injection
//! attempts, users outside the base DN, an outage mid-run, and timeouts.

use crate::common::slapd::{free_port, Slapd};
use crate::common::{self, route, TestGateway, Upstream};
use std::path::Path;
use std::time::{Duration, Instant};
use tollgate::config::{Config, UserSource};
use tollgate::directory::ldap::LdapDirectory;
use tollgate::directory::{DirectoryError, User, UserDirectory};

fn directory(users_section: &str) -> LdapDirectory {
    let config = Config::from_str(users_section, Path::new("/tmp/ldap-test/gateway.toml"))
        .unwrap_or_else(|e| panic!("valid config: {e}"));
    match &config.users.source {
        UserSource::Ldap(cfg) => LdapDirectory::new((**cfg).clone()).expect("directory builds"),
        UserSource::File { .. } => panic!("expected an LDAP source"),
    }
}

async fn login(
    d: &LdapDirectory,
    user: &str,
    password: &str,
) -> Result<Option<User>, DirectoryError> {
    d.authenticate(user, password).await
}

#[tokio::test]
async fn right_password_binds_and_reads_name_and_email_in_both_modes() {
    let slapd = Slapd::start();
    for section in [slapd.template_config(), slapd.search_config()] {
        let d = directory(&section);
        let user = login(&d, "alice", "wonderland")
            .await
            .expect("directory answers")
            .expect("alice logs in");
        assert_eq!(user.username, "alice");
        assert_eq!(user.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(user.email.as_deref(), Some("alice@example.org"));
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_fail_in_both_modes() {
    let slapd = Slapd::start();
    for section in [slapd.template_config(), slapd.search_config()] {
        let d = directory(&section);
        assert_eq!(login(&d, "alice", "wrong").await.expect("answers"), None);
        assert_eq!(
            login(&d, "nobody", "wonderland").await.expect("answers"),
            None
        );
        assert_eq!(
            login(&d, "bob", "wonderland").await.expect("answers"),
            None,
            "alice's password is not bob's"
        );
    }
}

#[tokio::test]
async fn empty_password_is_refused_before_any_bind() {
    // Pointed at a closed port: if a bind were attempted, the answer would be an outage
    // error, not a plain refusal.
    let section = format!(
        "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"ldap://127.0.0.1:{}\"\nuser_dn = \"uid={{username}},ou=people,dc=example,dc=org\"\n",
        free_port()
    );
    let d = directory(&section);
    assert_eq!(
        login(&d, "alice", "")
            .await
            .expect("refused without a bind"),
        None
    );
    // And against the real directory, an empty password never logs anyone in.
    let slapd = Slapd::start();
    for section in [slapd.template_config(), slapd.search_config()] {
        assert_eq!(
            login(&directory(&section), "alice", "")
                .await
                .expect("answers"),
            None
        );
    }
}

#[tokio::test]
async fn injection_in_the_username_never_widens_a_search_or_picks_another_user() {
    let slapd = Slapd::start();
    let attempts = [
        "*",
        "al*",
        "a*e",
        "alice)(uid=*",
        "*)(objectClass=*",
        "alice)(|(uid=*",
        "alice\\",
        "alice\u{0}",
        "alice,ou=people,dc=example,dc=org",
        "bob,ou=people",
        "alice+cn=Alice Liddell",
        "uid=alice",
        "alice=",
        "carol,ou=contractors",
    ];
    for section in [slapd.template_config(), slapd.search_config()] {
        let d = directory(&section);
        for name in attempts {
            for password in ["wonderland", "canwefixit", "outsider"] {
                let result = login(&d, name, password).await;
                assert!(
                    matches!(result, Ok(None)),
                    "{name:?}/{password}: {result:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_user_outside_the_base_dn_cannot_log_in() {
    let slapd = Slapd::start();
    for section in [slapd.template_config(), slapd.search_config()] {
        assert_eq!(
            login(&directory(&section), "carol", "outsider")
                .await
                .expect("answers"),
            None
        );
    }
}

#[tokio::test]
async fn directory_stopped_mid_run_is_an_outage_not_a_failed_login() {
    let mut slapd = Slapd::start();
    for section in [slapd.template_config(), slapd.search_config()] {
        let d = directory(&section);
        assert!(login(&d, "alice", "wonderland")
            .await
            .expect("answers")
            .is_some());
    }
    let template = directory(&slapd.template_config());
    let search = directory(&slapd.search_config());
    // Warm the search pool so a pooled connection is in use when the server goes away.
    assert!(login(&search, "bob", "canwefixit")
        .await
        .expect("answers")
        .is_some());
    slapd.stop();
    assert!(login(&template, "alice", "wonderland").await.is_err());
    assert!(login(&search, "alice", "wonderland").await.is_err());
}

#[tokio::test]
async fn a_directory_that_never_answers_times_out() {
    // Accepts TCP connections and never speaks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let section = format!(
        "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"ldap://127.0.0.1:{port}\"\nuser_dn = \"uid={{username}},ou=people,dc=example,dc=org\"\nconnect_timeout = \"500ms\"\ntimeout = \"500ms\"\n"
    );
    let started = Instant::now();
    let result = login(&directory(&section), "alice", "wonderland").await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn ldaps_and_starttls_work_with_the_configured_ca_and_fail_closed_without_it() {
    let slapd = Slapd::start_tls();
    let ca = slapd
        .ca_file
        .as_ref()
        .expect("TLS slapd has a CA")
        .display()
        .to_string();
    let tls_url = slapd.tls_url.clone().expect("TLS slapd has an ldaps URL");
    let dn = "user_dn = \"uid={username},ou=people,dc=example,dc=org\"\ntimeout = \"3s\"\nconnect_timeout = \"3s\"";
    let ldaps = format!(
        "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"{tls_url}\"\nca_file = \"{ca}\"\n{dn}\n"
    );
    let user = login(&directory(&ldaps), "alice", "wonderland")
        .await
        .expect("answers over ldaps");
    assert_eq!(
        user.expect("alice logs in").name.as_deref(),
        Some("Alice Liddell")
    );
    let starttls = format!(
        "[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"{}\"\nstarttls = true\nca_file = \"{ca}\"\n{dn}\n",
        slapd.url
    );
    assert!(login(&directory(&starttls), "alice", "wonderland")
        .await
        .expect("answers with StartTLS")
        .is_some());
    // Without the CA the server's certificate is not trusted: an outage, never a login.
    let untrusted =
        format!("[users]\nsource = \"ldap\"\n[users.ldap]\nurl = \"{tls_url}\"\n{dn}\n");
    assert!(login(&directory(&untrusted), "alice", "wonderland")
        .await
        .is_err());
}

/// Opens the authorize URL in a fresh cookie jar and submits the login form; follows the
/// redirect to the consent page when the login succeeds.
pub(crate) async fn sign_in(gw: &TestGateway, username: &str, password: &str) -> reqwest::Response {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("client");
    let page = browser
        .get(gw.url(AUTHORIZE))
        .send()
        .await
        .expect("authorize");
    let csrf = common::csrf_field(&page.text().await.expect("html"));
    let form = [
        ("username", username),
        ("password", password),
        ("csrf_token", &csrf),
    ];
    browser
        .post(gw.url(&AUTHORIZE.replace("/oauth/authorize", "/oauth/login")))
        .form(&form)
        .send()
        .await
        .expect("login")
}

const AUTHORIZE: &str = "/oauth/authorize?response_type=code&client_id=mail-app&redirect_uri=http%3A%2F%2F127.0.0.1%3A7000%2Fredirect&scope=email&state=s1";

pub(crate) fn ldap_gateway_config(users: &str, upstream: &str) -> String {
    let secret = tollgate::secrets::fast_secret_hash("mail-secret");
    format!(
        "[oauth]\nstore = \"memory\"\n[oauth.scopes]\nemail = \"Read your email\"\n{users}\n\
         [[clients]]\nid = \"mail-app\"\nname = \"Awesome Mail\"\nsecret_hash = \"{secret}\"\n\
         redirect_uris = [\"http://127.0.0.1:7000/redirect\"]\n\
         grant_types = [\"authorization_code\", \"client_credentials\"]\nscopes = [\"email\"]\n\
         {}",
        route("mail", "/api/mail", upstream, "scopes = [\"email\"]")
    )
}

#[tokio::test]
async fn ldap_login_shows_the_directory_name_and_an_outage_says_unavailable_while_proxying_goes_on()
{
    let mut slapd = Slapd::start();
    let upstream = Upstream::echo().await;
    let gw = TestGateway::spawn(&ldap_gateway_config(
        &slapd.search_config(),
        &upstream.url(),
    ))
    .await;
    let consent = sign_in(&gw, "alice", "wonderland").await;
    assert_eq!(consent.status(), 200);
    let html = consent.text().await.expect("html");
    assert!(
        html.contains("Alice Liddell"),
        "consent page names the directory user: {html}"
    );

    // A machine token obtained while the directory is up.
    let token = common::access_token(
        &gw,
        ("mail-app", "mail-secret"),
        &[("grant_type", "client_credentials")],
    )
    .await;

    slapd.stop();
    let down = sign_in(&gw, "bob", "canwefixit").await;
    assert_eq!(down.status(), 503);
    assert!(down.text().await.expect("html").contains("unavailable"));
    let metrics = gw.metrics().await;
    assert_eq!(
        common::metric(&metrics, "tollgate_logins_total{result=\"unavailable\"}"),
        Some(1.0)
    );

    let api = common::client()
        .get(gw.url("/api/mail/inbox"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("api");
    assert_eq!(
        api.status(),
        200,
        "valid tokens keep working while the directory is down"
    );
}

// ---------------------------------------------------------------- refresh re-checks the user

/// tollgate with LDAP users and a first-party client for the password and refresh grants.
async fn grant_gateway(users: &str, upstream: &Upstream) -> TestGateway {
    let secret = tollgate::secrets::fast_secret_hash("cli-secret");
    TestGateway::spawn(&format!(
        "[oauth]\nstore = \"memory\"\nallow_password_grant = true\n\
         [oauth.scopes]\nemail = \"Read your email\"\n{users}\n\
         [[clients]]\nid = \"cli\"\nsecret_hash = \"{secret}\"\n\
         grant_types = [\"password\", \"refresh_token\"]\nscopes = [\"email\"]\n{}",
        route("mail", "/api/mail", &upstream.url(), "scopes = [\"email\"]")
    ))
    .await
}

/// A token request by the `cli` client: status, JSON body and `Retry-After`.
async fn token_request(
    gw: &TestGateway,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value, Option<String>) {
    let r = common::client()
        .post(gw.url("/oauth/token"))
        .basic_auth("cli", Some("cli-secret"))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_string());
    (status, r.json().await.expect("JSON"), retry)
}

/// Signs `user` in with the password grant; returns (access, refresh) tokens.
async fn password_tokens(gw: &TestGateway, user: &str, password: &str) -> (String, String) {
    let form = [
        ("grant_type", "password"),
        ("username", user),
        ("password", password),
    ];
    let (status, json, _) = token_request(gw, &form).await;
    assert_eq!(status, 200, "{json}");
    let token = |k: &str| json[k].as_str().expect("a token").to_string();
    (token("access_token"), token("refresh_token"))
}

async fn refresh(gw: &TestGateway, token: &str) -> (u16, serde_json::Value, Option<String>) {
    token_request(
        gw,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await
}

/// The gateway's answer to a bearer call with `token`.
async fn api_status(gw: &TestGateway, token: &str) -> u16 {
    common::client()
        .get(gw.url("/api/mail/inbox"))
        .bearer_auth(token)
        .send()
        .await
        .expect("api")
        .status()
        .as_u16()
}

#[tokio::test]
async fn refresh_of_a_user_deleted_from_the_directory_is_refused_in_both_modes() {
    let slapd = Slapd::start();
    let upstream = Upstream::echo().await;
    let mut grants = Vec::new();
    for section in [slapd.template_config(), slapd.search_config()] {
        let gw = grant_gateway(&section, &upstream).await;
        let (_, refresh_token) = password_tokens(&gw, "bob", "canwefixit").await;
        let (status, json, _) = refresh(&gw, &refresh_token).await;
        assert_eq!(status, 200, "bob is still there: {json}");
        let token = |k: &str| json[k].as_str().expect("a token").to_string();
        grants.push((gw, token("access_token"), token("refresh_token")));
    }
    slapd.delete("uid=bob,ou=people,dc=example,dc=org").await;
    for (gw, access, refresh_token) in &grants {
        let (status, json, _) = refresh(gw, refresh_token).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("invalid_grant")),
            "{json}"
        );
        assert_eq!(
            api_status(gw, access).await,
            401,
            "the whole grant is revoked"
        );
    }
}

#[tokio::test]
async fn refresh_of_a_user_disabled_in_the_directory_is_refused_by_the_search_filter() {
    let slapd = Slapd::start();
    let upstream = Upstream::echo().await;
    // Like Active Directory's userAccountControl bit test: disabled accounts do not match.
    let section = slapd.search_config().replace(
        "(uid={username})",
        "(uid={username})(!(description=disabled))",
    );
    assert!(section.contains("description=disabled"), "{section}");
    let gw = grant_gateway(&section, &upstream).await;
    let (access, refresh_token) = password_tokens(&gw, "alice", "wonderland").await;
    slapd
        .add_value(
            "uid=alice,ou=people,dc=example,dc=org",
            "description",
            "disabled",
        )
        .await;
    let (status, json, _) = refresh(&gw, &refresh_token).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("invalid_grant")),
        "{json}"
    );
    assert_eq!(api_status(&gw, &access).await, 401);
}

#[tokio::test]
async fn refresh_while_the_directory_is_down_is_503_and_spends_nothing() {
    let mut slapd = Slapd::start();
    let upstream = Upstream::echo().await;
    let mut grants = Vec::new();
    for section in [slapd.template_config(), slapd.search_config()] {
        let gw = grant_gateway(&section, &upstream).await;
        let (access, refresh_token) = password_tokens(&gw, "alice", "wonderland").await;
        grants.push((gw, access, refresh_token));
    }
    slapd.stop();
    for (gw, access, refresh_token) in &grants {
        let (status, json, retry) = refresh(gw, refresh_token).await;
        assert_eq!(status, 503, "{json}");
        assert_eq!(json["error"], "temporarily_unavailable", "{json}");
        assert!(json.get("access_token").is_none(), "{json}");
        assert!(
            retry.as_deref().is_some_and(|r| r.parse::<u64>().is_ok()),
            "Retry-After: {retry:?}"
        );
        assert_eq!(
            api_status(gw, access).await,
            200,
            "the grant is not revoked"
        );
    }
    slapd.restart();
    for (gw, _, refresh_token) in &grants {
        let (status, json, _) = refresh(gw, refresh_token).await;
        assert_eq!(status, 200, "the refresh token was not spent: {json}");
    }
}
