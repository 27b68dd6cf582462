use super::*;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};

fn body(response: Response<Body>) -> String {
    match response.into_body() {
        Body::Full(bytes) => String::from_utf8(bytes.unwrap_or_default().to_vec()).expect("utf-8"),
        _ => panic!("an error answer is a full body"),
    }
}

fn header(response: &Response<Body>, name: http::header::HeaderName) -> Option<&str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn json(response: Response<Body>) -> serde_json::Value {
    serde_json::from_str(&body(response)).expect("a JSON body")
}

fn protocol(code: ErrorCode, basic: bool) -> Response<Body> {
    EndpointError::Protocol {
        error: OAuthError::new(code, "why"),
        basic,
    }
    .into_response()
}

#[test]
fn protocol_errors_are_rfc6749_json_with_their_status() {
    let cases = [
        (ErrorCode::InvalidRequest, 400),
        (ErrorCode::InvalidClient, 401),
        (ErrorCode::InvalidGrant, 400),
        (ErrorCode::UnauthorizedClient, 400),
        (ErrorCode::UnsupportedGrantType, 400),
        (ErrorCode::UnsupportedResponseType, 400),
        (ErrorCode::UnsupportedTokenType, 400),
        (ErrorCode::InvalidScope, 400),
        (ErrorCode::InvalidTarget, 400),
        (ErrorCode::InvalidDpopProof, 400),
        (ErrorCode::AccessDenied, 400),
        (ErrorCode::ServerError, 500),
        (ErrorCode::TemporarilyUnavailable, 503),
    ];
    for (code, status) in cases {
        let r = protocol(code, false);
        assert_eq!(r.status().as_u16(), status, "{code:?}");
        assert_eq!(header(&r, CONTENT_TYPE), Some("application/json"));
        assert_eq!(header(&r, CACHE_CONTROL), Some("no-store"));
        assert_eq!(header(&r, PRAGMA), Some("no-cache"));
        assert_eq!(header(&r, WWW_AUTHENTICATE), None, "{code:?}");
        let retry = (code == ErrorCode::TemporarilyUnavailable).then_some("5");
        assert_eq!(header(&r, RETRY_AFTER), retry, "{code:?}");
        assert_eq!(
            json(r),
            serde_json::json!({ "error": code.as_str(), "error_description": "why" })
        );
    }
}

#[test]
fn invalid_client_challenges_only_a_client_that_tried_basic() {
    let r = protocol(ErrorCode::InvalidClient, true);
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&r, WWW_AUTHENTICATE),
        Some(r#"Basic realm="tollgate""#)
    );
    assert_eq!(
        header(&protocol(ErrorCode::InvalidGrant, true), WWW_AUTHENTICATE),
        None
    );
}

#[test]
fn pages_are_html_with_their_status_and_the_page_headers() {
    let cases = [
        (
            PageError::InvalidRequest("The request is malformed."),
            400,
            "The request is malformed.",
        ),
        (
            PageError::BadForm,
            400,
            "The form was not filled in as expected.",
        ),
        (PageError::FormExpired, 403, "This form expired"),
        (
            PageError::UnknownClient,
            400,
            "The application is not registered here.",
        ),
        (
            PageError::Unavailable(StoreError::ThreadStopped),
            503,
            "The sign-in service is unavailable",
        ),
    ];
    for (page, status, text) in cases {
        let r = EndpointError::from(page).into_response();
        assert_eq!(r.status().as_u16(), status, "{text}");
        assert_eq!(header(&r, CONTENT_TYPE), Some("text/html; charset=utf-8"));
        assert_eq!(header(&r, CACHE_CONTROL), Some("no-store"));
        assert_eq!(
            header(&r, "x-frame-options".parse().expect("name")),
            Some("DENY")
        );
        // An HTML page is never told to retry, nor redirected.
        assert_eq!(header(&r, RETRY_AFTER), None);
        assert_eq!(header(&r, LOCATION), None);
        assert!(body(r).contains(text), "{text}");
    }
}

#[test]
fn redirects_carry_the_error_and_state_to_the_proven_uri() {
    let error = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
    let to = RedirectTarget {
        redirect_uri: "https://app.example/cb?x=1".into(),
        state: Some("s t".into()),
        in_fragment: false,
    };
    let r = EndpointError::Redirect {
        to,
        error: error.clone(),
    }
    .into_response();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(header(&r, CACHE_CONTROL), Some("no-store"));
    assert_eq!(
        header(&r, LOCATION),
        Some("https://app.example/cb?x=1&error=access_denied&error_description=the+user+denied+the+request&state=s+t")
    );
    assert!(body(r).is_empty());

    let to = RedirectTarget {
        redirect_uri: "https://app.example/cb".into(),
        state: None,
        in_fragment: true,
    };
    let r = EndpointError::Redirect { to, error }.into_response();
    assert_eq!(
        header(&r, LOCATION),
        Some("https://app.example/cb#error=access_denied&error_description=the+user+denied+the+request")
    );
}

#[test]
fn refused_forms_are_json_or_a_page() {
    let cases = [
        (
            FormRefusal::NotForm,
            400,
            "the body must be application/x-www-form-urlencoded",
        ),
        (FormRefusal::TooLarge, 413, "the body is too large"),
        (FormRefusal::TooSlow, 408, "the body did not arrive in time"),
        (FormRefusal::Broken, 400, "the body was cut off"),
    ];
    for (refusal, status, description) in cases {
        let r = EndpointError::Form {
            refusal,
            page: false,
        }
        .into_response();
        assert_eq!(r.status().as_u16(), status, "{refusal:?}");
        assert_eq!(header(&r, CONTENT_TYPE), Some("application/json"));
        assert_eq!(header(&r, PRAGMA), None);
        assert_eq!(
            json(r),
            serde_json::json!({ "error": "invalid_request", "error_description": description })
        );
        let r = EndpointError::Form {
            refusal,
            page: true,
        }
        .into_response();
        assert_eq!(r.status().as_u16(), status, "{refusal:?}");
        assert_eq!(header(&r, CONTENT_TYPE), Some("text/html; charset=utf-8"));
        assert!(body(r).contains("The form could not be read."));
    }
}

#[test]
fn wrong_methods_and_missing_documents_are_short_json() {
    let r = EndpointError::MethodNotAllowed { allow: "GET, POST" }.into_response();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&r, ALLOW), Some("GET, POST"));
    assert_eq!(header(&r, CACHE_CONTROL), Some("no-store"));
    assert_eq!(body(r), r#"{"error":"invalid_request"}"#);

    let r = EndpointError::NotFound { description: None }.into_response();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&r, CONTENT_TYPE), Some("application/json"));
    assert_eq!(body(r), r#"{"error":"not_found"}"#);

    let r = EndpointError::NotFound {
        description: Some("no protected route has this prefix"),
    }
    .into_response();
    assert_eq!(
        json(r),
        serde_json::json!({ "error": "not_found", "error_description": "no protected route has this prefix" })
    );
}
