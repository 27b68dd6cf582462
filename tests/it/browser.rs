//! The whole authorization-code flow in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by fantoccini): open the authorize URL, type the
//! credentials, approve, land on the client's redirect with a code, exchange it, call the
//! API through the gateway. Screenshots of the login and consent pages are written to
//! `target/test-artifacts/`.

use crate::common::slapd::free_port;
use crate::common::{self, route, TestGateway, Upstream};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fantoccini::{ClientBuilder, Locator};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        assert!(
            Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
            "Chromium is not installed: run `./test.sh` (it installs chromium and chromium-driver)"
        );
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn gateway(client_app: &str, api: &str) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = tollgate::secrets::hash_password("wonderland").expect("hash");
    std::fs::write(
        dir.path().join("users.toml"),
        format!("[[users]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\nname = \"Alice Liddell\"\n"),
    )
    .expect("users file");
    let secret = tollgate::secrets::fast_secret_hash("mail-secret");
    let config = format!(
        "[oauth]\nstore = \"memory\"\n[oauth.scopes]\nemail = \"Read your email\"\n\"email.send\" = \"Send email as you\"\n\
         [users]\nfile = \"users.toml\"\n\
         [[clients]]\nid = \"mail-app\"\nname = \"Awesome Mail\"\nsecret_hash = \"{secret}\"\n\
         redirect_uris = [\"{client_app}/redirect\"]\ngrant_types = [\"authorization_code\", \"refresh_token\"]\n\
         scopes = [\"email\", \"email.send\"]\n{}",
        route("mail", "/api/mail", api, "scopes = [\"email\"]")
    );
    TestGateway::spawn_in(dir, &config).await
}

#[tokio::test]
async fn authorization_code_flow_works_in_headless_chromium() {
    let client_app = Upstream::named("client-app").await;
    let api = Upstream::named("mail-api").await;
    let gw = gateway(&client_app.url(), &api.url()).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=430,900",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let caps = match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("built as an object above"),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session");

    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-browser-test";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = format!("{}/redirect", client_app.url());
    let authorize = format!(
        "{}?response_type=code&client_id=mail-app&redirect_uri={}&scope=email&state=st-42&code_challenge={challenge}&code_challenge_method=S256",
        gw.url("/oauth/authorize"),
        url_encode(&redirect_uri)
    );
    let result = async {
        browser.goto(&authorize).await?;
        browser
            .wait()
            .for_element(Locator::Css("input[name=username]"))
            .await?;
        assert!(
            browser.source().await?.contains("Awesome Mail"),
            "the login page names the app"
        );
        std::fs::write(artifacts().join("login.png"), browser.screenshot().await?)
            .expect("screenshot");
        browser
            .find(Locator::Css("input[name=username]"))
            .await?
            .send_keys("alice")
            .await?;
        browser
            .find(Locator::Css("input[name=password]"))
            .await?
            .send_keys("wonderland")
            .await?;
        browser
            .find(Locator::Css("form button[type=submit]"))
            .await?
            .click()
            .await?;

        browser
            .wait()
            .for_element(Locator::Css("button[value=approve]"))
            .await?;
        let consent = browser.source().await?;
        assert!(
            consent.contains("Read your email"),
            "consent lists the scope's text"
        );
        assert!(consent.contains("Alice Liddell"), "consent names the user");
        std::fs::write(artifacts().join("consent.png"), browser.screenshot().await?)
            .expect("screenshot");
        browser
            .find(Locator::Css("button[value=approve]"))
            .await?
            .click()
            .await?;

        let deadline = Instant::now() + Duration::from_secs(20);
        let landed = loop {
            let url = browser.current_url().await?;
            if url.as_str().starts_with(&redirect_uri) {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "never reached the client's redirect; at {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok::<_, fantoccini::error::CmdError>(landed)
    }
    .await;
    let _ = browser.close().await;
    let landed = result.expect("browser flow");
    let params: std::collections::HashMap<String, String> =
        landed.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("st-42"));
    let code = params.get("code").expect("a code in the redirect");
    assert!(
        client_app.hits() >= 1,
        "the client app received the redirect"
    );

    let access = common::access_token(
        &gw,
        ("mail-app", "mail-secret"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await;
    let echo: serde_json::Value = common::client()
        .get(gw.url("/api/mail/inbox"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("api call")
        .json()
        .await
        .expect("json");
    assert_eq!(echo["headers"]["x-auth-subject"][0], "alice");
    assert!(artifacts().join("login.png").exists() && artifacts().join("consent.png").exists());
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).expect("encodes")[2..].to_string()
}
