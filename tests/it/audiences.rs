//! Audiences (issue 11, item 3): RFC 8707 resource indicators at `/oauth/authorize` and
//! `/oauth/token` become the token's `aud`, a route with an `audience` refuses tokens not
//! meant for it, and RFC 9728 protected-resource metadata is published per protected route
//! and named in every 401 challenge (through both engines).

use crate::common::oauth::{
    query_params, AuthConfig, AuthRequest, AuthServer, Browser, JsonAnswer, TestStore, MAIL_APP,
    REPORTS,
};
use crate::common::{self, raw};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// The issuer of the test servers (the default of `[oauth] issuer`).
const ISSUER: &str = "http://127.0.0.1:8080";
/// The resource identifier of the `mail` route (no `audience`: issuer + prefix).
const MAIL: &str = "http://127.0.0.1:8080/api/mail";
/// The `reports` route's explicit audience.
const REPORTS_API: &str = "https://reports.example/api";

/// A third protected route with an explicit audience, on the echo upstream.
fn with_reports_route(config: AuthConfig, upstream: &str) -> AuthConfig {
    config.extra(&format!(
        "[[routes]]\nname = \"reports\"\npath_prefix = \"/api/reports\"\nupstream = \"{upstream}\"\n\
         auth = \"bearer\"\nscopes = [\"email\"]\naudience = \"{REPORTS_API}\"\n\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"{upstream}\"\nauth = \"none\"\n"
    ))
}

async fn server_on(store: TestStore) -> AuthServer {
    let up = common::Upstream::echo().await;
    let config = with_reports_route(AuthConfig::default().on(store), &up.url());
    config
        .spawn_in(tempfile::tempdir().expect("temp dir"), up)
        .await
}

async fn client_credentials(s: &AuthServer, resources: &[&str]) -> JsonAnswer {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", "email")];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    s.token(REPORTS, &form).await
}

#[tokio::test]
async fn a_resource_becomes_the_tokens_audience_and_routes_with_an_audience_check_it() {
    for store in TestStore::ALL {
        let s = server_on(store).await;
        // No resource: the token is for the issuer. Routes without an audience take it,
        // the one with an audience does not.
        let plain = client_credentials(&s, &[]).await;
        let plain = plain.access_token();
        assert_eq!(s.verify(plain).await["aud"], ISSUER, "{store:?}");
        assert_eq!(s.call("/api/mail/x", plain).await.0, 200, "{store:?}");
        let (status, body) = s.call("/api/reports/x", plain).await;
        assert_eq!(status, 401, "{store:?}: {body}");
        assert_eq!(body["error"], "invalid_token");

        // For the reports API: accepted there (and on routes without an audience).
        let scoped = client_credentials(&s, &[REPORTS_API]).await;
        let scoped = scoped.access_token();
        assert_eq!(s.verify(scoped).await["aud"], REPORTS_API, "{store:?}");
        assert_eq!(s.call("/api/reports/x", scoped).await.0, 200, "{store:?}");
        assert_eq!(s.call("/api/mail/x", scoped).await.0, 200, "{store:?}");

        // Two resources: both in `aud`.
        let both = client_credentials(&s, &[MAIL, REPORTS_API]).await;
        assert_eq!(
            s.verify(both.access_token()).await["aud"],
            json!([MAIL, REPORTS_API]),
            "{store:?}"
        );
    }
}

#[tokio::test]
async fn a_resource_that_names_no_protected_route_is_invalid_target() {
    let s = server_on(TestStore::Memory).await;
    for bad in [
        "https://elsewhere.example/api",
        "http://127.0.0.1:8080/open",
        "http://127.0.0.1:8080/api/mail/inbox",
        "",
    ] {
        client_credentials(&s, &[bad])
            .await
            .assert_error(400, "invalid_target");
    }
    // At the authorization endpoint: by redirect, like every error once the client and
    // redirect URI are proven.
    let request = AuthRequest::code(MAIL_APP, "email").set("resource", "https://elsewhere.example");
    let page = Browser::new().get(&request.url(&s)).await;
    assert_eq!(page.status, 302, "{}", page.body);
    let to = query_params(&page.location().expect("Location"));
    assert_eq!(to.get("error").map(String::as_str), Some("invalid_target"));
    assert_eq!(to.get("state").map(String::as_str), Some(request.state()));
}

#[tokio::test]
async fn resources_asked_at_authorize_carry_through_the_code_and_refresh_and_may_only_narrow() {
    let s = server_on(TestStore::Memory).await;
    let request = AuthRequest::code(MAIL_APP, "email")
        .set("resource", MAIL)
        .repeat("resource", REPORTS_API);
    let browser = Browser::for_server(&s);
    let code = browser.code(&s, &request).await;
    // Narrowed at the token endpoint to one of the two.
    let narrowed = s
        .token(
            MAIL_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::common::oauth::REDIRECT_URI),
                ("code_verifier", request.verifier()),
                ("resource", REPORTS_API),
            ],
        )
        .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.json);
    assert_eq!(s.verify(narrowed.access_token()).await["aud"], REPORTS_API);
    // A refresh without resource gets the grant's two; one naming another is refused.
    let refreshed = s.refresh(MAIL_APP, narrowed.refresh_token(), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.json);
    assert_eq!(
        s.verify(refreshed.access_token()).await["aud"],
        json!([MAIL, REPORTS_API])
    );
    let widened = s
        .token(
            MAIL_APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refreshed.refresh_token()),
                ("resource", "http://127.0.0.1:8080/api/send"),
            ],
        )
        .await;
    widened.assert_error(400, "invalid_target");
}

#[tokio::test]
async fn each_protected_route_publishes_rfc_9728_metadata_named_in_its_challenge() {
    let s = server_on(TestStore::Memory).await;
    let get = |path: &str| {
        let url = s.url(path);
        async move {
            let r = common::client().get(url).send().await.expect("answered");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, mail) = get("/.well-known/oauth-protected-resource/api/mail").await;
    assert_eq!(status, 200, "{mail}");
    assert_eq!(mail["resource"], MAIL);
    assert_eq!(mail["authorization_servers"], json!([ISSUER]));
    assert_eq!(mail["scopes_supported"], json!(["email"]));
    assert_eq!(mail["bearer_methods_supported"], json!(["header"]));
    let (_, reports) = get("/.well-known/oauth-protected-resource/api/reports").await;
    assert_eq!(reports["resource"], REPORTS_API);
    for none in [
        "/.well-known/oauth-protected-resource/open",
        "/.well-known/oauth-protected-resource/api",
        "/.well-known/oauth-protected-resource",
    ] {
        assert_eq!(get(none).await.0, 404, "{none}");
    }

    // The 401s name it, on the fast lane (a plain GET) and on hyper (a request with a body).
    let metadata =
        format!("resource_metadata=\"{ISSUER}/.well-known/oauth-protected-resource/api/mail\"");
    let requests = [
        "GET /api/mail/x HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
        "POST /api/mail/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi".to_string(),
        "GET /api/mail/x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer nope\r\n\r\n".to_string(),
    ];
    for request in requests {
        let mut stream = tokio::net::TcpStream::connect(s.gw.public)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let response = raw::read_response(&mut stream).await;
        assert_eq!(response.status, 401, "{request}: {}", response.head);
        let challenge = response
            .head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
            .unwrap_or_else(|| panic!("no challenge: {}", response.head));
        assert!(challenge.contains(&metadata), "{challenge}");
    }
}
