use super::*;

#[test]
fn normalise_path_resolves_tricks_to_the_plain_path() {
    let cases = [
        ("/api/mail", "/api/mail"),
        ("/api/mail/", "/api/mail/"),
        ("/api/mail/../admin", "/api/admin"),
        ("/api/mail/%2e%2e/admin", "/api/admin"),
        ("/api/mail/%2E%2E/admin", "/api/admin"),
        ("/api/mail/.%2e/admin", "/api/admin"),
        ("//api//mail", "/api/mail"),
        ("/api/./mail", "/api/mail"),
        ("/api/m%61il", "/api/mail"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/", "/"),
        ("/api/mail/..", "/api/"),
        ("/a/%7e/b", "/a/~/b"),
        ("/a/%3f", "/a/%3F"),
        ("/a/%c3%a9", "/a/%C3%A9"),
        ("/caf\u{e9}", "/caf\u{e9}"),
        // An encoded ';' is never decoded: to either side only a literal ';' in a segment.
        ("/open/..%3B/admin", "/open/..%3B/admin"),
        ("/a/%3b", "/a/%3B"),
    ];
    for (raw, want) in cases {
        assert_eq!(normalise_path(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn normalise_path_refuses_encoded_separators_and_bad_escapes() {
    let cases = [
        ("/api/mail%2f..%2fadmin", PathError::EncodedSeparator),
        ("/api/mail%2F", PathError::EncodedSeparator),
        ("/api%5cadmin", PathError::EncodedSeparator),
        ("/api%00", PathError::EncodedSeparator),
        ("/api%zz", PathError::BadEscape),
        ("/api%2", PathError::BadEscape),
        ("api", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        // Raw '\\' and ';' anywhere, also where normalising would have removed them.
        ("/open/..\\admin", PathError::Backslash),
        ("\\admin", PathError::NotAbsolute),
        ("/\\", PathError::Backslash),
        ("/api/mail\\", PathError::Backslash),
        ("/api/%2e%2e/x\\y", PathError::Backslash),
        ("/open/..;/admin", PathError::Semicolon),
        ("/api/mail;jsessionid=1", PathError::Semicolon),
        ("/api/mail/;", PathError::Semicolon),
        ("/api/../x;y", PathError::Semicolon),
        ("/a%2e/;", PathError::Semicolon),
    ];
    for (raw, want) in cases {
        assert_eq!(normalise_path(raw), Err(want), "{raw}");
    }
}

#[test]
fn already_normal_paths_are_recognised_in_one_pass() {
    let cases = [
        ("/", true),
        ("/api/mail", true),
        ("/api/mail/", true),
        ("/api/mail/.x/..y/...", true),
        ("/caf\u{e9}", true),
        ("//", false),
        ("/api//mail", false),
        ("/api/./mail", false),
        ("/api/mail/.", false),
        ("/api/mail/..", false),
        ("/..", false),
        ("/api/m%61il", false),
    ];
    for (raw, want) in cases {
        assert_eq!(is_already_normal(raw), Ok(want), "{raw}");
        // Whatever the fast check says, normalising changes exactly the paths it flags.
        let normalised = normalise_path(raw).expect("valid path");
        assert_eq!(normalised == raw, want, "{raw} became {normalised}");
    }
}

#[test]
fn prefix_matches_only_on_segment_boundaries() {
    let cases = [
        ("/api/mail", "/api/mail", true),
        ("/api/mail", "/api/mail/", true),
        ("/api/mail", "/api/mail/x", true),
        ("/api/mail", "/api/mailbox", false),
        ("/api/mail", "/api", false),
        ("/", "/anything", true),
    ];
    for (prefix, path, want) in cases {
        assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
    }
}

#[test]
fn longest_prefix_wins_and_host_routes_beat_hostless_ones() {
    let table = RouteTable::new([
        (None, "/"),
        (None, "/api"),
        (None, "/api/mail"),
        (Some("mail.example.com"), "/api"),
    ]);
    assert_eq!(table.find(None, "/api/mail/inbox"), Some(2));
    assert_eq!(table.find(None, "/api/mailbox"), Some(1));
    assert_eq!(table.find(Some("mail.example.com"), "/api/x"), Some(3));
    assert_eq!(table.find(Some("mail.example.com"), "/api/mail/x"), Some(2));
    assert_eq!(table.find(Some("other.example.com"), "/api/x"), Some(1));
    assert_eq!(table.find(None, "/other"), Some(0));
}

#[test]
fn no_route_when_nothing_matches() {
    let table = RouteTable::new([(None, "/api/mail"), (Some("a.example"), "/x")]);
    assert_eq!(table.find(None, "/api/mailbox"), None);
    assert_eq!(table.find(Some("b.example"), "/x"), None);
}

#[test]
fn strip_prefix_never_leaves_an_empty_path() {
    assert_eq!(strip_prefix("/api/mail", "/api/mail"), "/");
    assert_eq!(strip_prefix("/api/mail", "/api/mail/inbox"), "/inbox");
    assert_eq!(strip_prefix("/", "/inbox"), "/inbox");
}

#[test]
fn normalise_host_drops_port_case_and_trailing_dot() {
    assert_eq!(normalise_host("API.Example.com:8080"), "api.example.com");
    assert_eq!(normalise_host("api.example.com."), "api.example.com");
    assert_eq!(normalise_host("[::1]:8080"), "[::1]");
    assert_eq!(normalise_host("[::1]"), "[::1]");
}
