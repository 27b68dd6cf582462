use super::*;

const NOW: u64 = 1_000_000;
const ISSUER: &str = "https://as.example.com";

fn parse(json: &str) -> IntrospectionAnswer {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("test JSON {json} parses: {e}"))
}

fn verdict(json: &str, issuer: Option<&str>) -> Result<Principal, Refusal> {
    parse(json).into_principal(NOW, issuer)
}

fn refusal(json: &str, issuer: Option<&str>) -> Option<Refusal> {
    verdict(json, issuer).err()
}

#[test]
fn active_answer_becomes_principal_with_scopes() {
    let p = verdict(
        r#"{"active":true,"scope":"email email.send","client_id":"app","sub":"alice","exp":2000000}"#,
        None,
    )
    .expect("active");
    assert_eq!(p.sub, "alice");
    assert_eq!(p.client_id, "app");
    assert_eq!(p.scopes, ["email", "email.send"]);
    assert_eq!(p.headers.scope, "email email.send");
    assert!(p.audiences.is_empty());
}

#[test]
fn subject_falls_back_to_username_then_client() {
    let p = verdict(r#"{"active":true,"client_id":"svc"}"#, None).expect("active");
    assert_eq!(p.sub, "svc");
    assert!(p.scopes.is_empty());
    let p = verdict(
        r#"{"active":true,"client_id":"svc","username":"bob"}"#,
        None,
    )
    .expect("active");
    assert_eq!(p.sub, "bob");
}

#[test]
fn only_access_tokens_usable_as_bearer_tokens_pass() {
    // (token_type member, refused?)
    let cases: &[(&str, Option<Refusal>)] = &[
        (r#""Bearer""#, None),
        (r#""bearer""#, None),
        (r#""BEARER""#, None),
        (r#""access_token""#, None),
        (r#""urn:ietf:params:oauth:token-type:access_token""#, None),
        ("null", None),
        (r#""refresh_token""#, Some(Refusal::NotAnAccessToken)),
        (
            r#""urn:ietf:params:oauth:token-type:refresh_token""#,
            Some(Refusal::NotAnAccessToken),
        ),
        (r#""id_token""#, Some(Refusal::NotAnAccessToken)),
        (
            r#""urn:ietf:params:oauth:token-type:id_token""#,
            Some(Refusal::NotAnAccessToken),
        ),
        // DPoP without `cnf.jkt`: there is no key to check proofs against.
        (r#""DPoP""#, Some(Refusal::SenderConstrained)),
        (r#""mac""#, Some(Refusal::NotAnAccessToken)),
        (r#""N_A""#, Some(Refusal::NotAnAccessToken)),
        (r#""""#, Some(Refusal::NotAnAccessToken)),
        (r#""Bearer ""#, Some(Refusal::NotAnAccessToken)),
    ];
    for (token_type, want) in cases {
        let json =
            format!(r#"{{"active":true,"sub":"a","client_id":"c","token_type":{token_type}}}"#);
        assert_eq!(refusal(&json, None), *want, "token_type {token_type}");
    }
    // Absent: RFC 7662 makes it optional.
    assert_eq!(refusal(r#"{"active":true,"sub":"a"}"#, None), None);
}

#[test]
fn validity_window_is_honoured() {
    let cases: &[(&str, Option<Refusal>)] = &[
        (r#""exp":1000001"#, None),
        (r#""exp":1000000"#, Some(Refusal::Expired)),
        (r#""exp":999"#, Some(Refusal::Expired)),
        (r#""nbf":999999"#, None),
        (r#""nbf":1000000"#, None),
        // Within the documented leeway for an issuer clock running ahead.
        (r#""nbf":1000060"#, None),
        (r#""nbf":1000061"#, Some(Refusal::NotYetValid)),
        (r#""nbf":1003600,"exp":1007200"#, Some(Refusal::NotYetValid)),
    ];
    for (members, want) in cases {
        let json = format!(r#"{{"active":true,"sub":"a",{members}}}"#);
        assert_eq!(refusal(&json, None), *want, "{members}");
    }
}

#[test]
fn issuer_is_checked_only_when_configured() {
    // (iss member, [verify] issuer, refused?)
    let cases: &[(&str, Option<&str>, Option<Refusal>)] = &[
        (r#","iss":"https://as.example.com""#, Some(ISSUER), None),
        (
            r#","iss":"https://evil.example.com""#,
            Some(ISSUER),
            Some(Refusal::WrongIssuer),
        ),
        // Compared exactly: a trailing slash is another issuer.
        (
            r#","iss":"https://as.example.com/""#,
            Some(ISSUER),
            Some(Refusal::WrongIssuer),
        ),
        ("", Some(ISSUER), Some(Refusal::WrongIssuer)),
        (r#","iss":null"#, Some(ISSUER), Some(Refusal::WrongIssuer)),
        (r#","iss":"https://anyone.example""#, None, None),
        ("", None, None),
    ];
    for (member, issuer, want) in cases {
        let json = format!(r#"{{"active":true,"sub":"a"{member}}}"#);
        assert_eq!(refusal(&json, *issuer), *want, "{member} vs {issuer:?}");
    }
}

#[test]
fn audience_is_read_as_a_string_or_an_array() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        (r#","aud":null"#, &[]),
        (
            r#","aud":"https://api.example.com""#,
            &["https://api.example.com"],
        ),
        (r#","aud":["a","b"]"#, &["a", "b"]),
        (r#","aud":[]"#, &[]),
    ];
    for (member, want) in cases {
        let json = format!(r#"{{"active":true,"sub":"a"{member}}}"#);
        let p = verdict(&json, None).unwrap_or_else(|r| panic!("{member}: {r:?}"));
        assert_eq!(p.audiences, *want, "{member}");
        for a in *want {
            assert!(p.has_audience(a));
        }
        assert!(!p.has_audience("https://other.example.com"));
    }
}

#[test]
fn refused_answers_are_inactive() {
    let cases: &[(&str, Refusal)] = &[
        (r#"{"active":false}"#, Refusal::NotActive),
        (
            r#"{"active":false,"sub":"a","token_type":"Bearer"}"#,
            Refusal::NotActive,
        ),
        (
            r#"{"active":true,"sub":"a","token_type":"DPoP","cnf":{"jkt":""}}"#,
            Refusal::SenderConstrained,
        ),
        (
            r#"{"active":true,"sub":"a","token_type":"DPoP","cnf":"jkt"}"#,
            Refusal::SenderConstrained,
        ),
        (
            r#"{"active":true,"sub":"a","cnf":{"jkt":"x","x5t#S256":"y"}}"#,
            Refusal::SenderConstrained,
        ),
        (
            r#"{"active":true,"sub":"a","token_type":"Bearer","cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}"#,
            Refusal::SenderConstrained,
        ),
        (
            r#"{"active":true,"sub":"a\nb","client_id":"c"}"#,
            Refusal::UnforwardableIdentity,
        ),
    ];
    for (json, want) in cases {
        assert_eq!(refusal(json, None), Some(*want), "{json}");
    }
}

#[test]
fn answers_of_the_wrong_shape_are_unreadable_not_inactive() {
    // Each is a broken endpoint (503 upstream of here), never a verdict.
    for json in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"active":"true"}"#,
        r#"{"active":1}"#,
        r#"{"active":true,"exp":"tomorrow"}"#,
        r#"{"active":true,"exp":-5}"#,
        r#"{"active":true,"nbf":"now"}"#,
        r#"{"active":true,"aud":7}"#,
        r#"{"active":true,"aud":["a",7]}"#,
        r#"{"active":true,"iss":["https://as.example.com"]}"#,
        r#"{"active":true,"scope":["email"]}"#,
        r#"{"active":true,"token_type":7}"#,
    ] {
        assert!(
            serde_json::from_str::<IntrospectionAnswer>(json).is_err(),
            "{json} should not parse"
        );
    }
}

#[test]
fn dpop_bound_answers_carry_their_key_thumbprint() {
    let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    for token_type in [r#","token_type":"DPoP""#, r#","token_type":"dpop""#, ""] {
        let json = format!(
            r#"{{"active":true,"sub":"a","client_id":"c"{token_type},"cnf":{{"jkt":"{jkt}"}}}}"#
        );
        let p = verdict(&json, None).unwrap_or_else(|r| panic!("{json}: {r:?}"));
        assert_eq!(p.jkt.as_deref(), Some(jkt), "{json}");
    }
    let p = verdict(r#"{"active":true,"sub":"a","token_type":"Bearer"}"#, None).expect("active");
    assert_eq!(p.jkt, None);
}
