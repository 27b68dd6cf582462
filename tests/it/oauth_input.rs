//! Malformed requests to the authorization server get a clear 4xx JSON answer, never a 500
//! or a dropped connection.

use crate::common::oauth::{AuthConfig, AuthServer};
use crate::common::{self, raw};
use reqwest::StatusCode;
use serde_json::Value;

async fn server() -> AuthServer {
    AuthConfig::default().spawn().await
}

async fn error_of(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("a JSON error body");
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let s = server().await;
    let big = format!(
        "grant_type=client_credentials&pad={}",
        "x".repeat(70 * 1024)
    );
    let r = common::client()
        .post(s.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .expect("answered");
    assert_eq!(
        error_of(r).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request".to_string())
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_form_is_400() {
    let s = server().await;
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "application/json",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
        ),
        ("text/plain", b"grant_type=client_credentials".to_vec()),
        (
            "application/x-www-form-urlencoded",
            vec![b'g', b'=', 0xff, 0xfe],
        ),
    ];
    for (content_type, body) in cases {
        let r = common::client()
            .post(s.url("/oauth/token"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("answered");
        assert_eq!(
            error_of(r).await,
            (StatusCode::BAD_REQUEST, "invalid_request".to_string()),
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn malformed_basic_credentials_are_401_invalid_client() {
    let s = server().await;
    for value in [
        "Basic !!!not-base64",
        "Basic bm9jb2xvbg==",
        "Bearer abc",
        "Basic",
    ] {
        let r = common::client()
            .post(s.url("/oauth/token"))
            .header("authorization", value)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("answered");
        assert_eq!(
            error_of(r).await,
            (StatusCode::UNAUTHORIZED, "invalid_client".to_string()),
            "{value}"
        );
    }
}

#[tokio::test]
async fn wrong_methods_and_unknown_paths_are_4xx() {
    let s = server().await;
    let c = common::client();
    let r = c.get(s.url("/oauth/token")).send().await.expect("answered");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    let r = c
        .delete(s.url("/oauth/authorize"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = c
        .get(s.url("/oauth/nothing-here"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(s.gw.internal_url("/verify"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_malformed_authorize_query_is_an_html_error_page() {
    let s = server().await;
    let r = raw::get(
        s.gw.public,
        "/oauth/authorize?client_id=%zz&response_type=code",
        "",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.head);
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(r.header("location").is_none());
}
