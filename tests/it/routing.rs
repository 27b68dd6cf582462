//! Routing: longest prefix on segment boundaries, hosts, path tricks, no route → 404.

use crate::common::{self, raw, remote_verify, route, Introspector, TestGateway, Upstream};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn longest_prefix_wins_on_segment_boundaries() {
    let api = Upstream::named("api").await;
    let mail = Upstream::named("mail").await;
    let gw = TestGateway::spawn(&format!(
        "{}{}",
        route("api", "/api", &api.url(), "auth = \"none\""),
        route("mail", "/api/mail", &mail.url(), "auth = \"none\"")
    ))
    .await;
    let c = common::client();
    for (path, want) in [
        ("/api/mail/inbox", "mail"),
        ("/api/mail", "mail"),
        ("/api/mailbox", "api"),
        ("/api/x", "api"),
    ] {
        let echo: Value = c
            .get(gw.url(path))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(echo["upstream"], want, "{path}");
        assert_eq!(echo["path"], path);
    }
}

#[tokio::test]
async fn no_route_is_404_json() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route("mail", "/api/mail", &up.url(), "auth = \"none\"")).await;
    let r = common::client()
        .get(gw.url("/elsewhere"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn dot_segment_and_encoding_tricks_never_reach_another_route() {
    let public = Upstream::named("public").await;
    let admin = Upstream::named("admin").await;
    let introspector = Introspector::spawn(Duration::ZERO).await;
    let gw = TestGateway::spawn(&format!(
        "{}{}{}",
        remote_verify(&introspector, ""),
        route("mail", "/api/mail", &public.url(), "auth = \"none\""),
        route(
            "admin",
            "/api/admin",
            &admin.url(),
            "auth = \"bearer\"\nscopes = [\"admin\"]\n"
        )
    ))
    .await;
    // Each of these resolves to /api/admin: it must be treated exactly like /api/admin
    // (401 from the guard), never proxied by the open "mail" route.
    for target in [
        "/api/mail/../admin",
        "/api/mail/%2e%2e/admin",
        "/api/mail/%2E%2E/admin",
        "/api/mail/.%2e/admin",
        "//api//mail/../admin",
    ] {
        let r = raw::get(gw.public, target, "").await;
        assert_eq!(r.status, 401, "{target}: {}", r.head);
    }
    // Encoded slashes cannot be routed safely at all.
    for target in [
        "/api/mail%2f..%2fadmin",
        "/api/mail/..%2Fadmin",
        "/api/mail/%5c..%5cadmin",
    ] {
        let r = raw::get(gw.public, target, "").await;
        assert_eq!(r.status, 400, "{target}: {}", r.head);
    }
    assert_eq!(admin.hits(), 0);
    assert_eq!(public.hits(), 0);
    // The upstream sees the same normalised path the gateway routed on.
    let r = raw::get(gw.public, "/api//mail/./inbox/%7euser", "").await;
    assert_eq!(r.status, 200);
    let echo: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(echo["path"], "/api/mail/inbox/~user");
}

#[tokio::test]
async fn host_routes_match_only_their_host() {
    let any = Upstream::named("any").await;
    let special = Upstream::named("special").await;
    let gw = TestGateway::spawn(&format!(
        "{}{}",
        route("any", "/", &any.url(), "auth = \"none\""),
        route(
            "special",
            "/",
            &special.url(),
            "auth = \"none\"\nhost = \"api.example.com\""
        )
    ))
    .await;
    let r = raw::send(
        gw.public,
        "GET /x HTTP/1.1\r\nHost: API.example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).expect("json")["upstream"],
        "special"
    );
    let r = raw::send(
        gw.public,
        "GET /x HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).expect("json")["upstream"],
        "any"
    );
}

#[tokio::test]
async fn strip_prefix_removes_the_prefix_and_keeps_the_query() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route(
        "mail",
        "/api/mail",
        &up.url(),
        "auth = \"none\"\nstrip_prefix = true",
    ))
    .await;
    let c = common::client();
    let echo: Value = c
        .get(gw.url("/api/mail/inbox?page=2"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(echo["path"], "/inbox");
    assert_eq!(echo["query"], "page=2");
    let echo: Value = c
        .get(gw.url("/api/mail"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(echo["path"], "/");
}

#[tokio::test]
async fn asterisk_form_and_oversized_heads_get_4xx_not_a_dropped_connection() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route("all", "/", &up.url(), "auth = \"none\"")).await;
    let r = raw::send(
        gw.public,
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    let huge = "a".repeat(512 * 1024);
    let r = raw::send(
        gw.public,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 431, "{}", r.head);
    assert_eq!(up.hits(), 0);
}

/// hyper reads at most 64 KiB of request head (its read buffer, which an idle connection
/// keeps, grows no further): a head just under is served, one over is 431.
#[tokio::test]
async fn request_heads_up_to_64_kib_are_served_and_larger_ones_get_431() {
    let up = Upstream::echo().await;
    let gw = TestGateway::spawn(&route("all", "/", &up.url(), "auth = \"none\"")).await;
    for (size, status) in [(60 * 1024, 200), (66 * 1024, 431)] {
        let big = "a".repeat(size);
        let r = raw::send(
            gw.public,
            &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(r.status, status, "X-Big of {size} bytes: {}", r.head);
    }
    assert_eq!(up.hits(), 1);
}
