//! The files we ship are tested as a newcomer uses them: `gateway.toml` and the bench config
//! parse, and the README's walkthrough works with the demo user and the documented secrets.

use crate::common::slapd::free_port;
use crate::common::{self, TestGateway};
use std::path::Path;
use tollgate::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// RFC 7636 appendix B's pair, as in the README.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

#[test]
fn shipped_configs_parse() {
    for file in ["gateway.toml", "benches/bench-gateway.toml"] {
        let path = Path::new(ROOT).join(file);
        if let Err(e) = Config::load(&path) {
            panic!("{file} does not parse:\n{e}");
        }
    }
}

/// The shipped config with its fixed ports and file store swapped for test ones; the demo
/// API stays behind the internal listener, now on a free port.
async fn demo_gateway() -> TestGateway {
    let text = std::fs::read_to_string(Path::new(ROOT).join("gateway.toml")).expect("gateway.toml");
    let internal = format!("127.0.0.1:{}", free_port());
    let users = Path::new(ROOT).join("users.toml");
    let text = text
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"")
        .replace("127.0.0.1:9090", &internal)
        .replace("\"sqlite:data/tollgate.db\"", "\"memory\"")
        .replace(
            "\"users.toml\"",
            &format!("{:?}", users.display().to_string()),
        );
    TestGateway::spawn(&text).await
}

#[tokio::test]
async fn readme_walkthrough_works_with_the_demo_user_and_secrets() {
    let gw = demo_gateway().await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let query = format!(
        "response_type=code&client_id=mail-app&redirect_uri=http%3A%2F%2F127.0.0.1%3A7000%2Fredirect&scope=email&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256"
    );
    // 1-2: authorize → login page → consent page → approve → redirect with a code.
    let r = browser
        .get(gw.url(&format!("/oauth/authorize?{query}")))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 302);
    let login_url = gw.url(&format!("/oauth/login?{query}"));
    let html = browser
        .get(&login_url)
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    let csrf = common::csrf_field(&html);
    let r = browser
        .post(&login_url)
        .form(&[
            ("username", "alice"),
            ("password", "wonderland"),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .expect("login post");
    assert_eq!(r.status(), 303, "alice / wonderland logs in");
    let consent_url = gw.url(&format!("/oauth/consent?{query}"));
    let html = browser
        .get(&consent_url)
        .send()
        .await
        .expect("consent")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Awesome Mail") && html.contains("Read your email"));
    let csrf = common::csrf_field(&html);
    let r = browser
        .post(&consent_url)
        .form(&[("decision", "approve"), ("csrf_token", &csrf)])
        .send()
        .await
        .expect("approve");
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    assert!(
        location.starts_with("http://127.0.0.1:7000/redirect?code="),
        "{location}"
    );
    let code = reqwest::Url::parse(&location)
        .expect("absolute redirect")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code in the redirect");

    // 3: the app exchanges the code with its documented secret.
    let c = common::client();
    let token = common::access_token(
        &gw,
        ("mail-app", "mail-app-demo-secret"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:7000/redirect"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;

    // 4: the demo mail API answers through the gateway, and only with a token.
    let inbox: serde_json::Value = c
        .get(gw.url("/api/mail/inbox"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(inbox["user"], "alice");
    assert_eq!(inbox["client_id"], "mail-app");
    assert_eq!(
        c.get(gw.url("/api/mail/inbox"))
            .send()
            .await
            .expect("api")
            .status(),
        401
    );

    // The other demo clients: a machine token, and introspection as a resource server.
    let machine = common::access_token(
        &gw,
        ("reports", "reports-demo-secret"),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert!(!machine.is_empty());
    let verdict: serde_json::Value = c
        .post(gw.internal_url("/verify"))
        .basic_auth("gateway", Some("gateway-demo-secret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(verdict["active"], true);
    assert_eq!(verdict["username"], "alice");

    // 5: revoke, and the same call is refused at once.
    let r = c
        .post(gw.url("/oauth/revoke"))
        .basic_auth("mail-app", Some("mail-app-demo-secret"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = c
        .get(gw.url("/api/mail/inbox"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 401);
}
