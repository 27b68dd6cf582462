//! `[server] trusted_proxies`: `X-Forwarded-For` names the client only when the TCP peer
//! is a trusted proxy. Login throttling and the access log use that address; what the
//! upstream receives still has the real peer appended.

use crate::common::{self, echoed, TestGateway, Upstream};
use serde_json::Value;

/// A gateway with the password grant, alice and bob, an IP limit of 3 failures (user
/// limits out of reach), an open route to an echo upstream, and `server` keys.
async fn gateway(server: &str, upstream: &str) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = tollgate::secrets::hash_password("wonderland").expect("hash");
    let users = format!(
        "[[users]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\n\n\
         [[users]]\nusername = \"bob\"\npassword_hash = \"{hash}\"\n"
    );
    std::fs::write(dir.path().join("users.toml"), users).expect("users file");
    let secret = tollgate::secrets::fast_secret_hash("cli-secret");
    let config = format!(
        "{}[oauth]\nstore = \"memory\"\nallow_password_grant = true\n\
         [oauth.scopes]\nemail = \"Read your email\"\n\
         [users]\nsource = \"file\"\nfile = \"users.toml\"\n\
         [users.throttle]\nmax_failures_per_user = 100\nmax_failures_per_ip = 3\n\
         window = \"1m\"\nban = \"1m\"\n\
         [[clients]]\nid = \"cli\"\nsecret_hash = \"{secret}\"\n\
         grant_types = [\"password\"]\nscopes = [\"email\"]\n\n{}",
        common::server_section(server),
        common::route("open", "/open", upstream, "auth = \"none\""),
    );
    TestGateway::spawn_in(dir, &config).await
}

/// A password grant with `X-Forwarded-For: xff`; the HTTP status.
async fn sign_in(gw: &TestGateway, user: &str, password: &str, xff: &str) -> u16 {
    common::client()
        .post(gw.url("/oauth/token"))
        .basic_auth("cli", Some("cli-secret"))
        .header("x-forwarded-for", xff)
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("token request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_untrusted_peer_cannot_dodge_the_address_ban_by_rotating_x_forwarded_for() {
    let up = Upstream::echo().await;
    let gw = gateway("", &up.url()).await;
    // Three failures, each claiming another address and another user.
    for (i, user) in ["u1", "u2", "u3"].into_iter().enumerate() {
        let xff = format!("198.51.100.{i}");
        assert_eq!(sign_in(&gw, user, "guess", &xff).await, 400);
    }
    // The address that is banned is the real peer's, whatever the next claim says.
    assert_eq!(
        sign_in(&gw, "bob", "wonderland", "203.0.113.77").await,
        400,
        "127.0.0.1 is banned"
    );
    let lines = gw.access_log_lines(4).await;
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["client_addr"], "127.0.0.1", "{line}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_and_logged() {
    let up = Upstream::echo().await;
    let gw = gateway(
        "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]",
        &up.url(),
    )
    .await;
    // The proxy (127.0.0.1) reports 198.51.100.9; the client's own claim to its left is
    // not believed, and the inner proxy 10.1.2.3 is skipped.
    let chain = "1.2.3.4, 198.51.100.9, 10.1.2.3";
    for user in ["u1", "u2", "u3"] {
        assert_eq!(sign_in(&gw, user, "guess", chain).await, 400);
    }
    assert_eq!(
        sign_in(&gw, "bob", "wonderland", "5.6.7.8, 198.51.100.9").await,
        400,
        "198.51.100.9 is banned, whatever it puts to its left"
    );
    // Another client behind the same proxy is not: the proxy itself was never counted.
    assert_eq!(
        sign_in(&gw, "bob", "wonderland", "198.51.100.10").await,
        200
    );

    let r = common::client()
        .get(gw.url("/open/x"))
        .header("x-forwarded-for", "198.51.100.11")
        .send()
        .await
        .expect("proxied");
    let echo: Value = r.json().await.expect("echo");
    assert_eq!(
        echoed(&echo, "x-forwarded-for"),
        ["198.51.100.11, 127.0.0.1"],
        "the chain goes on with the real peer appended"
    );
    let lines = gw.access_log_lines(6).await;
    let addrs: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            v["client_addr"].as_str().expect("client_addr").to_string()
        })
        .collect();
    assert_eq!(
        addrs,
        [
            "198.51.100.9",
            "198.51.100.9",
            "198.51.100.9",
            "198.51.100.9",
            "198.51.100.10",
            "198.51.100.11"
        ]
    );
}

#[tokio::test]
async fn trusted_proxies_must_be_addresses_or_networks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.toml");
    let text = "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.example\", \"10.0.0.1/8\"]\n\
                [log]\nformat = \"xml\"\naccess = \"\"\n";
    std::fs::write(&path, text).expect("config");
    let e = match tollgate::Config::load(&path) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for want in [
        "[server].trusted_proxies[1]: \"proxy.example\" is not an IP address",
        "[server].trusted_proxies[2]: \"10.0.0.1/8\" has host bits set",
        "[log].format: \"xml\" is not \"json\" or \"combined\"",
        "[log].access: must be",
    ] {
        assert!(e.contains(want), "{want}\nin:\n{e}");
    }
}
