use super::*;
use crate::config::GrantType;

fn clients() -> Vec<ClientConfig> {
    vec![
        ClientConfig {
            id: "mail-app".into(),
            name: "Awesome Mail".into(),
            secret_hash: Some("sha256:00".into()),
            redirect_uris: vec!["http://127.0.0.1:7000/redirect".into()],
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::RefreshToken,
                GrantType::Implicit,
            ],
            scopes: vec!["email".into(), "email.send".into()],
            introspect: false,
            dpop: crate::config::DpopMode::Optional,
        },
        ClientConfig {
            id: "spa".into(),
            name: "spa".into(),
            secret_hash: None,
            redirect_uris: vec![
                "https://spa.example/a".into(),
                "https://spa.example/b".into(),
            ],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["email".into()],
            introspect: false,
            dpop: crate::config::DpopMode::Optional,
        },
    ]
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn run(query: &str, allow_implicit: bool) -> Result<AuthorizeRequest, AuthorizeError> {
    let cs = clients();
    let params = Params::parse(query).expect("form");
    let resources = crate::oauth::resource::sample();
    validate(
        &params,
        |id| cs.iter().find(|c| c.id == id),
        allow_implicit,
        &resources,
    )
}

#[test]
fn resources_must_name_protected_routes_and_may_repeat() {
    let base = "response_type=code&client_id=mail-app&redirect_uri=http://127.0.0.1:7000/redirect";
    let ok = run(
        &format!("{base}&resource=https%3A%2F%2Fas.example%2Fapi%2Fmail&resource=https%3A%2F%2Fsend.example"),
        false,
    )
    .expect("valid");
    assert_eq!(
        ok.audiences,
        ["https://as.example/api/mail", "https://send.example"]
    );
    assert!(run(base, false).expect("valid").audiences.is_empty());
    for bad in [
        "https%3A%2F%2Fas.example%2Fopen",
        "https%3A%2F%2Fevil.example",
        "",
    ] {
        let r = run(&format!("{base}&resource={bad}"), false);
        assert_eq!(code_of(r), Some(ErrorCode::InvalidTarget), "{bad}");
    }
}

fn code_of(r: Result<AuthorizeRequest, AuthorizeError>) -> Option<ErrorCode> {
    match r {
        Err(AuthorizeError::Redirect { error, .. }) => Some(error.code),
        _ => None,
    }
}

#[test]
fn unproven_client_or_redirect_uri_never_redirects() {
    let cases = [
        "response_type=code&redirect_uri=http://127.0.0.1:7000/redirect",
        "response_type=code&client_id=nobody&redirect_uri=http://127.0.0.1:7000/redirect",
        "response_type=code&client_id=mail-app&redirect_uri=http://127.0.0.1:7000/redirect/x",
        "response_type=code&client_id=mail-app&redirect_uri=http://127.0.0.1:7000/Redirect",
        "response_type=code&client_id=mail-app&redirect_uri=http://127.0.0.1:7000/redirect?x=1",
        "response_type=code&client_id=mail-app&client_id=spa&redirect_uri=http://127.0.0.1:7000/redirect",
        "response_type=code&client_id=spa&code_challenge_method=S256&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    ];
    for q in cases {
        assert!(matches!(run(q, false), Err(AuthorizeError::Page(_))), "{q}");
    }
}

#[test]
fn valid_code_request_with_single_registered_uri_may_omit_it() {
    let r = run(
        "response_type=code&client_id=mail-app&scope=email&state=s1",
        false,
    )
    .expect("valid");
    assert_eq!(r.redirect_uri, "http://127.0.0.1:7000/redirect");
    assert!(!r.redirect_uri_given);
    assert_eq!(r.scopes, ["email"]);
    assert_eq!(r.state.as_deref(), Some("s1"));
}

#[test]
fn errors_after_the_redirect_is_proven_go_back_by_redirect() {
    let base = "client_id=mail-app&redirect_uri=http://127.0.0.1:7000/redirect&state=s";
    let cases = [
        ("", ErrorCode::InvalidRequest),
        ("&response_type=magic", ErrorCode::UnsupportedResponseType),
        ("&response_type=token", ErrorCode::UnsupportedResponseType),
        ("&response_type=code&scope=admin", ErrorCode::InvalidScope),
        ("&response_type=code&state=again", ErrorCode::InvalidRequest),
        (
            "&response_type=code&code_challenge=x&code_challenge_method=plain",
            ErrorCode::InvalidRequest,
        ),
        (
            &format!("&response_type=code&code_challenge={CHALLENGE}"),
            ErrorCode::InvalidRequest,
        ),
        (
            "&response_type=code&code_challenge_method=S256",
            ErrorCode::InvalidRequest,
        ),
        (
            "&response_type=code&code_challenge=short&code_challenge_method=S256",
            ErrorCode::InvalidRequest,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(
            code_of(run(&format!("{base}{extra}"), false)),
            Some(want),
            "{extra}"
        );
    }
}

#[test]
fn public_clients_must_use_pkce() {
    let q = "response_type=code&client_id=spa&redirect_uri=https://spa.example/a";
    assert_eq!(code_of(run(q, false)), Some(ErrorCode::InvalidRequest));
    let ok = run(
        &format!("{q}&code_challenge={CHALLENGE}&code_challenge_method=S256"),
        false,
    )
    .expect("valid");
    assert_eq!(ok.code_challenge.as_deref(), Some(CHALLENGE));
}

#[test]
fn implicit_needs_the_switch_and_the_client_grant() {
    let q = "response_type=token&client_id=mail-app&redirect_uri=http://127.0.0.1:7000/redirect";
    let r = run(q, true).expect("valid");
    assert_eq!(r.response_type, ResponseType::Token);
    let q = "response_type=token&client_id=spa&redirect_uri=https://spa.example/a";
    assert_eq!(code_of(run(q, true)), Some(ErrorCode::UnauthorizedClient));
}
