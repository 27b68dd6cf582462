use super::*;

#[test]
fn pkce_s256_matches_rfc7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(pkce_matches(verifier, challenge));
    assert!(!pkce_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
        challenge
    ));
    assert!(!pkce_matches("short", challenge));
}

#[test]
fn duplicated_parameters_are_noticed() {
    let p = Params::parse("a=1&b=2&a=3").expect("form");
    assert_eq!(p.duplicated(), Some("a"));
    assert_eq!(Params::parse("a=1&b=2").expect("form").duplicated(), None);
}

#[test]
fn empty_parameters_count_as_absent() {
    let p = Params::parse("scope=&state=x").expect("form");
    assert_eq!(p.get("scope"), None);
    assert_eq!(p.get("state"), Some("x"));
}

#[test]
fn scopes_are_granted_only_within_what_is_allowed() {
    let allowed = vec!["email".to_string(), "email.send".to_string()];
    assert_eq!(grant_scopes(None, &allowed), Ok(allowed.clone()));
    assert_eq!(
        grant_scopes(Some("email"), &allowed),
        Ok(vec!["email".to_string()])
    );
    assert_eq!(
        grant_scopes(Some("email  email"), &allowed),
        Ok(vec!["email".to_string()])
    );
    let refused = [Some("admin"), Some("email admin"), Some("e\"mail")];
    for asked in refused {
        assert_eq!(
            grant_scopes(asked, &allowed).map_err(|e| e.code),
            Err(ErrorCode::InvalidScope),
            "{asked:?}"
        );
    }
}

#[test]
fn redirects_carry_parameters_in_query_or_fragment() {
    assert_eq!(
        redirect_with("https://a/cb", &[("code", "x y"), ("state", "s")], false),
        "https://a/cb?code=x+y&state=s"
    );
    assert_eq!(
        redirect_with("https://a/cb?k=v", &[("code", "c")], false),
        "https://a/cb?k=v&code=c"
    );
    assert_eq!(
        redirect_with("https://a/cb", &[("access_token", "t")], true),
        "https://a/cb#access_token=t"
    );
}

#[test]
fn token_endpoint_statuses_follow_rfc6749() {
    assert_eq!(ErrorCode::InvalidClient.status(), 401);
    assert_eq!(ErrorCode::InvalidGrant.status(), 400);
    assert_eq!(ErrorCode::TemporarilyUnavailable.status(), 503);
}
