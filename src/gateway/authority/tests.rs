use super::*;
use http::HeaderMap;

fn hosts(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(HOST, HeaderValue::from_str(v).expect("test header value"));
    }
    map
}

#[test]
fn valid_authorities_are_host_names_and_ip_literals_with_an_optional_port() {
    let cases = [
        ("api.example.com", true),
        ("API.Example.COM.", true),
        ("api.example.com:8080", true),
        ("api.example.com:", true),
        ("127.0.0.1:80", true),
        ("[::1]", true),
        ("[::1]:8443", true),
        ("[2001:db8::7]:65535", true),
        ("under_score~tilde", true),
        ("", false),
        (":80", false),
        ("a.example:65536", false),
        ("a.example:080808", false),
        ("a.example:8o", false),
        ("a.example:80:80", false),
        ("user@a.example", false),
        ("a.example/path", false),
        ("a.example,b.example", false),
        ("a.example b.example", false),
        ("a%2eexample", false),
        ("a.example;x", false),
        ("a\\b", false),
        ("[::1", false),
        ("[::1]x", false),
        ("[::1]:x", false),
        ("[127.0.0.1]", false),
        ("[v1.x]", false),
        ("::1", false),
    ];
    for (authority, want) in cases {
        assert_eq!(is_valid(authority.as_bytes()), want, "{authority:?}");
    }
}

/// The authority `request_authority` finds, as text.
fn authority(
    version: Version,
    target: Option<&str>,
    host_lines: &[&str],
) -> Result<Option<String>, AuthorityError> {
    let target: Option<Authority> = target.map(|t| t.parse().expect("test authority"));
    let found = request_authority(version, target.as_ref(), &hosts(host_lines))?;
    Ok(found.map(|v| v.to_str().expect("ASCII").to_string()))
}

#[test]
fn one_host_per_request_and_the_target_authority_wins() {
    use AuthorityError::*;
    let (h10, h11, h2) = (Version::HTTP_10, Version::HTTP_11, Version::HTTP_2);
    let target = Some("target.example:8080");
    let from_target = Ok(Some("target.example:8080".to_string()));
    let host = |h: &str| Ok(Some(h.to_string()));

    assert_eq!(authority(h11, None, &["api.example"]), host("api.example"));
    assert_eq!(authority(h11, None, &[]), Err(MissingHost));
    assert_eq!(authority(h11, None, &["a", "a"]), Err(DuplicateHost));
    assert_eq!(authority(h11, None, &["a, b"]), Err(MalformedHost));
    assert_eq!(authority(h11, None, &[""]), Err(MalformedHost));
    // Absolute form: the target wins; a Host is still required, once, and must be sane.
    assert_eq!(authority(h11, target, &["other.example"]), from_target);
    assert_eq!(authority(h11, target, &[]), Err(MissingHost));
    assert_eq!(authority(h11, target, &["a", "b"]), Err(DuplicateHost));
    assert_eq!(authority(h11, target, &["bad host"]), Err(MalformedHost));
    // HTTP/1.0 need not name a host, but may not name two.
    assert_eq!(authority(h10, None, &[]), Ok(None));
    assert_eq!(authority(h10, None, &["a", "b"]), Err(DuplicateHost));
    // HTTP/2: :authority, or Host without it; never two different ones.
    assert_eq!(authority(h2, target, &[]), from_target);
    assert_eq!(authority(h2, target, &["TARGET.example:8080"]), from_target);
    assert_eq!(
        authority(h2, target, &["other.example"]),
        Err(ConflictingHost)
    );
    assert_eq!(authority(h2, None, &["api.example"]), host("api.example"));
    assert_eq!(authority(h2, None, &[]), Err(MissingHost));
}

#[test]
fn userinfo_in_an_absolute_form_target_is_refused() {
    let target: Authority = "user:pw@target.example".parse().expect("authority");
    assert_eq!(
        request_authority(Version::HTTP_11, Some(&target), &hosts(&["target.example"])),
        Err(AuthorityError::MalformedTarget)
    );
}
