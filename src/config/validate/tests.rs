use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new("/etc/tollgate/gateway.toml"))
}

fn problems(text: &str) -> Vec<String> {
    match parse_str(text) {
        Ok(_) => panic!("expected the config to be refused"),
        Err(e) => e.to_string().lines().map(str::to_string).collect(),
    }
}

const MINIMAL_ROUTE: &str = r#"
[[routes]]
name = "mail"
path_prefix = "/api/mail"
upstream = "http://127.0.0.1:3000"
"#;

#[test]
fn empty_file_gives_documented_defaults() {
    let c = parse_str("").expect("empty config is valid");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.internal_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.oauth.issuer, "http://127.0.0.1:8080");
    assert_eq!(
        c.oauth.store,
        StoreSpec::Sqlite(PathBuf::from("/etc/tollgate/data/tollgate.db"))
    );
    assert_eq!(c.oauth.access_token_ttl, Duration::from_secs(3600));
    assert_eq!(c.oauth.refresh_token_ttl, Duration::from_secs(30 * 86400));
    assert_eq!(c.oauth.code_ttl, Duration::from_secs(60));
    assert!(!c.oauth.allow_implicit && !c.oauth.allow_password_grant);
    assert!(matches!(c.verify.source, VerifySource::Local));
    assert_eq!(c.verify.cache_ttl, Duration::from_secs(30));
    assert_eq!(c.verify.negative_cache_ttl, Duration::from_secs(5));
    assert_eq!(c.verify.cache_capacity, 100_000);
    assert!(
        matches!(&c.users.source, UserSource::File { path, required: false } if path == Path::new("/etc/tollgate/users.toml"))
    );
    assert_eq!(c.users.throttle.max_failures_per_user, 5);
}

#[test]
fn route_defaults_and_relative_paths() {
    let c = parse_str(MINIMAL_ROUTE).expect("valid");
    let r = &c.routes[0];
    assert_eq!(r.timeout, Duration::from_secs(30));
    assert!(!r.strip_prefix);
    assert_eq!(r.upstreams.len(), 1);
    let c = parse_str(
        "[[routes]]\nname=\"a\"\npath_prefix=\"/a/\"\nupstream=[\"http://x:1\",\"https://y\"]\n",
    )
    .expect("valid");
    assert_eq!(c.routes[0].path_prefix, "/a");
    assert_eq!(c.routes[0].auth, AuthMode::Bearer);
    assert_eq!(c.routes[0].upstreams.len(), 2);
}

#[test]
fn unknown_keys_are_errors_naming_the_key_path_line_and_column() {
    let p = problems("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:3:1: [server].lisen: unknown key"]
    );

    let p = problems(&format!("{MINIMAL_ROUTE}timout = \"5s\"\n"));
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:6:1: [[routes]] \"mail\".timout: unknown key"]
    );

    let p =
        problems("[server.tls]\nlisten = \"127.0.0.1:1\"\ncert = \"c\"\nkey = \"k\"\nkye = 1\n");
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:5:1: [server.tls].kye: unknown key"]
    );

    let p = problems("[sever]\n");
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:1:1: sever: unknown section (expected one of server, oauth, users, clients, verify, routes, log)"]
    );
}

/// One typo, one problem: the rest of its table is still read, so nothing falls back to a
/// default that would make other keys look wrong.
#[test]
fn a_typo_brings_no_follow_on_problems() {
    let typo_in_oauth = r#"
[oauth]
isuer = "http://127.0.0.1:8080"
scopes = { email = "Read your email" }

[[clients]]
id = "app"
redirect_uris = ["http://127.0.0.1:7000/cb"]
grant_types = ["authorization_code"]
scopes = ["email"]
"#;
    let p = problems(typo_in_oauth);
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:3:1: [oauth].isuer: unknown key"]
    );

    let typo_in_ldap = r#"
[users]
source = "ldap"

[users.ldap]
url = "ldap://127.0.0.1:389"
user_dn = "uid={username},dc=example"
time_out = "5s"
"#;
    let p = problems(typo_in_ldap);
    assert_eq!(
        p,
        ["/etc/tollgate/gateway.toml:8:1: [users.ldap].time_out: unknown key"]
    );
}

/// A value of the wrong type spoils its whole table, but not the checks of other tables.
#[test]
fn a_broken_oauth_table_does_not_make_every_client_scope_unknown() {
    let text = r#"
[oauth]
allow_implicit = "yes"
scopes = { email = "Read your email" }

[[clients]]
id = "app"
redirect_uris = ["http://127.0.0.1:7000/cb"]
grant_types = ["authorization_code"]
scopes = ["email"]
"#;
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("/etc/tollgate/gateway.toml:2:1: [oauth]: invalid type"),
        "{p:?}"
    );
}

#[test]
fn every_mistake_is_reported_not_just_the_first() {
    let text = r#"
[server]
listen = "not-an-address"

[verify]
cache_ttl = "soon"

[[routes]]
name = "mail"
path_prefix = "api/mail"
upstream = "ftp://example.com"
"#;
    let p = problems(text);
    assert_eq!(p.len(), 4, "{p:?}");
    assert!(p.iter().any(|l| l.contains("[server].listen")));
    assert!(p.iter().any(|l| l.contains("[verify].cache_ttl")));
    assert!(p
        .iter()
        .any(|l| l.contains("[[routes]] \"mail\".path_prefix: must start with '/'")));
    assert!(p.iter().any(
        |l| l.contains("[[routes]] \"mail\".upstream: \"ftp://example.com\" is not an http(s) URL")
    ));
}

#[test]
fn bad_route_values_are_refused() {
    let cases = [
        ("auth = \"basic\"", ".auth"),
        ("timeout = \"0s\"", ".timeout: must be longer than zero"),
        ("host = \"api.example.com:8080\"", ".host"),
    ];
    for (line, want) in cases {
        let p = problems(&format!("{MINIMAL_ROUTE}{line}\n"));
        assert!(p.iter().any(|l| l.contains(want)), "{line}: {p:?}");
    }
    let p = problems(&format!(
        "{MINIMAL_ROUTE}auth = \"none\"\nscopes = [\"email\"]\n"
    ));
    assert!(p[0].contains("scopes need auth = \"bearer\""), "{p:?}");
    let p = problems(&format!("{MINIMAL_ROUTE}{MINIMAL_ROUTE}"));
    assert!(
        p.iter()
            .any(|l| l.contains("another route has the same name")),
        "{p:?}"
    );
    let dotted = MINIMAL_ROUTE.replace("/api/mail", "/api/../admin");
    assert!(problems(&dotted)[0].contains("'..' segments"));
    let parameter = MINIMAL_ROUTE.replace("/api/mail", "/api/mail;v=1");
    assert!(problems(&parameter)[0].contains("no '?', '#', '%', '\\', ';' or '//'"));
}

#[test]
fn credentials_in_upstream_urls_are_refused_without_being_shown() {
    for url in [
        "http://u:p@127.0.0.1:1",
        "https://user:s3cret@api.internal/v1",
        "http://token@api.internal",
    ] {
        let route = MINIMAL_ROUTE.replace("http://127.0.0.1:3000", url);
        let p = problems(&route);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("[[routes]] \"mail\".upstream: \"")
                && p[0].contains("***@")
                && p[0].contains("credentials (user:password@)"),
            "{p:?}"
        );
        let secret = &url[url.find("//").expect("scheme") + 2..url.find('@').expect("userinfo")];
        assert!(!p[0].contains(secret), "{secret} shown in {p:?}");
    }
    // Listed upstreams are checked one by one.
    let listed = MINIMAL_ROUTE.replace(
        "\"http://127.0.0.1:3000\"",
        "[\"http://127.0.0.1:3000\", \"http://a:b@127.0.0.1:3001\"]",
    );
    assert!(problems(&listed)[0].contains("\"http://***@127.0.0.1:3001\""));
}

#[test]
fn redact_userinfo_blanks_only_the_userinfo() {
    let cases = [
        ("http://u:p@h:1/x@y", "http://***@h:1/x@y"),
        ("http://h:1/p?q=a@b", "http://h:1/p?q=a@b"),
        ("https://a@b@h", "https://***@h"),
        ("not a url", "not a url"),
        ("u:p@h", "***@h"),
    ];
    for (url, want) in cases {
        assert_eq!(redact_userinfo(url), want, "{url}");
    }
}

#[test]
fn remote_verify_needs_url_and_credentials() {
    let p = problems("[verify]\nsource = \"remote\"\n");
    assert_eq!(p.len(), 3, "{p:?}");
    let ok = parse_str(
        "[verify]\nsource = \"remote\"\nurl = \"http://127.0.0.1:9/verify\"\nclient_id = \"gw\"\nclient_secret = \"s\"\n",
    )
    .expect("valid");
    assert!(
        matches!(ok.verify.source, VerifySource::Remote(ref r) if r.client_secret.expose() == "s")
    );
}

#[test]
fn clients_are_checked_against_scopes_grants_and_redirects() {
    let text = r#"
[oauth.scopes]
email = "Read your email"

[[clients]]
id = "app"
grant_types = ["authorization_code", "teleport", "client_credentials"]
scopes = ["email", "admin"]
redirect_uris = ["https://app.example/cb#frag"]
"#;
    let p = problems(text);
    assert!(
        p.iter()
            .any(|l| l.contains("\"teleport\" is not a grant type")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("\"admin\" is not listed in [oauth.scopes]")),
        "{p:?}"
    );
    assert!(p.iter().any(|l| l.contains("without a fragment")), "{p:?}");
    assert!(
        p.iter()
            .any(|l| l.contains(".secret_hash: required for client_credentials")),
        "{p:?}"
    );
}

#[test]
fn client_dpop_takes_optional_or_required() {
    let client = |dpop: &str, grants: &str| {
        format!(
            "[oauth.scopes]\nemail = \"e\"\n[[clients]]\nid = \"app\"\nredirect_uris = [\"https://app.example/cb\"]\ngrant_types = [{grants}]\n{dpop}\n"
        )
    };
    let any_problems = |text: &str| -> Vec<String> {
        match parse_str(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    };
    for dpop in ["", "dpop = \"optional\"", "dpop = \"required\""] {
        let p = any_problems(&client(dpop, "\"authorization_code\""));
        assert!(!p.iter().any(|l| l.contains(".dpop")), "{dpop}: {p:?}");
    }
    let p = problems(&client("dpop = \"always\"", "\"authorization_code\""));
    assert!(
        p.iter().any(|l| l
            .contains("[[clients]] \"app\".dpop: \"always\" is not \"optional\" or \"required\"")),
        "{p:?}"
    );
    let p = problems(&client("dpop = \"required\"", "\"implicit\""));
    assert!(
        p.iter()
            .any(|l| l.contains(".dpop: \"required\" leaves the implicit")),
        "{p:?}"
    );
}

#[test]
fn durations_accept_the_documented_forms() {
    for (text, secs) in [("30s", 30), ("5m", 300), ("1h", 3600), ("30d", 2_592_000)] {
        assert_eq!(
            parse_duration(text),
            Some(Duration::from_secs(secs)),
            "{text}"
        );
    }
    assert_eq!(parse_duration("soon"), None);
    assert_eq!(parse_duration("30"), None);
}

#[test]
fn syntax_errors_name_the_file_line_and_column() {
    let e = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n  max_connections = = 3\n")
        .err()
        .expect("invalid TOML");
    let text = e.to_string();
    assert!(text.starts_with("/etc/tollgate/gateway.toml:3:"), "{text}");
    assert!(text.contains(": not valid TOML: "), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn verify_issuer_is_for_remote_verifiers_and_kept_exactly() {
    let remote = "[verify]\nsource = \"remote\"\nurl = \"http://127.0.0.1:9/verify\"\nclient_id = \"gw\"\nclient_secret = \"s\"\n";
    let c = parse_str(remote).expect("valid");
    assert!(matches!(c.verify.source, VerifySource::Remote(ref r) if r.issuer.is_none()));
    let c = parse_str(&format!("{remote}issuer = \"https://as.example.com/\"\n")).expect("valid");
    assert!(
        matches!(c.verify.source, VerifySource::Remote(ref r) if r.issuer.as_deref() == Some("https://as.example.com/"))
    );
    for bad in ["", "https://as.example.com with space", "a\tb"] {
        let p = problems(&format!("{remote}issuer = {bad:?}\n"));
        assert!(
            p.iter()
                .any(|l| l.contains("[verify].issuer") && l.contains("not an issuer identifier")),
            "{bad:?}: {p:?}"
        );
    }
    let p = problems("[verify]\nissuer = \"https://as.example.com\"\n");
    assert!(
        p[0].contains("[verify].issuer: only used with source = \"remote\""),
        "{p:?}"
    );
}

#[test]
fn route_audience_is_optional_and_needs_a_bearer_route() {
    let c = parse_str(MINIMAL_ROUTE).expect("valid");
    assert_eq!(c.routes[0].audience, None);
    let c = parse_str(&format!(
        "{MINIMAL_ROUTE}audience = \"https://api.example.com/mail\"\n"
    ))
    .expect("valid");
    assert_eq!(
        c.routes[0].audience.as_deref(),
        Some("https://api.example.com/mail")
    );
    // Third-party servers often use plain names as audiences (e.g. a client id).
    let c = parse_str(&format!("{MINIMAL_ROUTE}audience = \"mail-api\"\n")).expect("valid");
    assert_eq!(c.routes[0].audience.as_deref(), Some("mail-api"));
    let cases = [
        (
            "audience = \"\"",
            ".audience: \"\" is not a resource identifier",
        ),
        ("audience = \"a b\"", "is not a resource identifier"),
        (
            "auth = \"none\"\naudience = \"https://api.example.com\"",
            ".audience: audience needs auth = \"bearer\"",
        ),
    ];
    for (lines, want) in cases {
        let p = problems(&format!("{MINIMAL_ROUTE}{lines}\n"));
        assert!(p.iter().any(|l| l.contains(want)), "{lines}: {p:?}");
    }
}

#[test]
fn staleness_keys_have_documented_defaults_and_refuse_nonsense() {
    let c = parse_str(MINIMAL_ROUTE).expect("valid");
    assert_eq!(c.verify.max_stale, Duration::from_secs(1));
    assert_eq!(c.verify.stale_grace, Duration::from_secs(300));
    assert_eq!(c.routes[0].when_store_down, WhenStoreDown::ServeCached);
    let c = parse_str(&format!(
        "[verify]\nmax_stale = \"250ms\"\nstale_grace = \"0s\"\n{MINIMAL_ROUTE}when_store_down = \"deny\"\n"
    ))
    .expect("valid");
    assert_eq!(c.verify.max_stale, Duration::from_millis(250));
    assert_eq!(c.verify.stale_grace, Duration::ZERO);
    assert_eq!(c.routes[0].when_store_down, WhenStoreDown::Deny);
    let cases = [
        (
            format!("{MINIMAL_ROUTE}when_store_down = \"serve\"\n"),
            ".when_store_down: \"serve\" is not \"serve_cached\" or \"deny\"",
        ),
        (
            format!("{MINIMAL_ROUTE}auth = \"none\"\nwhen_store_down = \"deny\"\n"),
            ".when_store_down: when_store_down needs auth = \"bearer\"",
        ),
        (
            "[verify]\nmax_stale = \"0s\"\n".to_string(),
            "[verify].max_stale: must be longer than zero",
        ),
        (
            "[verify]\nstale_grace = \"soon\"\n".to_string(),
            "[verify].stale_grace",
        ),
    ];
    for (text, want) in cases {
        let p = problems(&text);
        assert!(p.iter().any(|l| l.contains(want)), "{text}: {p:?}");
    }
}

#[test]
fn server_limits_have_the_documented_defaults_and_routes_inherit_the_body_limit() {
    let c = parse_str(MINIMAL_ROUTE).expect("valid");
    let l = c.server.limits;
    assert_eq!(l.max_connections, 10_000);
    assert_eq!(l.request_head_timeout, Duration::from_secs(30));
    assert_eq!(l.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(l.max_request_body, 10 * 1024 * 1024);
    assert_eq!(l.request_body_timeout, Duration::from_secs(30));
    assert_eq!(c.routes[0].max_request_body, 10 * 1024 * 1024);

    let c = parse_str(&format!(
        "[server]\nmax_connections = 2\nrequest_head_timeout = \"300ms\"\nkeepalive_timeout = \"1s\"\n\
         max_request_body = \"1KiB\"\nrequest_body_timeout = \"2s\"\n{MINIMAL_ROUTE}\
         [[routes]]\nname = \"big\"\npath_prefix = \"/big\"\nupstream = \"http://127.0.0.1:1\"\n\
         max_request_body = \"2 MB\"\n"
    ))
    .expect("valid");
    let l = c.server.limits;
    assert_eq!(l.max_connections, 2);
    assert_eq!(l.request_head_timeout, Duration::from_millis(300));
    assert_eq!(l.keepalive_timeout, Duration::from_secs(1));
    assert_eq!(l.request_body_timeout, Duration::from_secs(2));
    assert_eq!(c.routes[0].max_request_body, 1024, "inherits [server]");
    assert_eq!(c.routes[1].max_request_body, 2_000_000, "its own");
}

#[test]
fn sizes_accept_binary_and_decimal_units_and_nothing_else() {
    for (text, bytes) in [
        ("512KiB", 512 * 1024),
        ("10MiB", 10 << 20),
        ("1GiB", 1 << 30),
        ("100KB", 100_000),
        ("3 MB", 3_000_000),
        ("1gb", 1_000_000_000),
        ("800B", 800),
        (" 2mib ", 2 << 20),
    ] {
        assert_eq!(parse_size(text), Some(bytes), "{text}");
    }
    for text in [
        "", "10", "MiB", "1.5MiB", "-1KiB", "10 MiBs", "ten MiB", "1TiB",
    ] {
        assert_eq!(parse_size(text), None, "{text:?}");
    }
    assert_eq!(parse_size("99999999999999999GiB"), None, "overflow");
}

#[test]
fn bad_limits_are_refused_naming_the_key() {
    let cases = [
        (
            "max_connections = 0",
            "[server].max_connections: must be at least 1",
        ),
        ("max_connections = -5", "[server]: invalid value"),
        (
            "request_head_timeout = \"0s\"",
            "[server].request_head_timeout: must be longer than zero",
        ),
        (
            "keepalive_timeout = \"later\"",
            "[server].keepalive_timeout: \"later\" is not a duration",
        ),
        (
            "request_body_timeout = \"0ms\"",
            "[server].request_body_timeout: must be longer than zero",
        ),
        (
            "max_request_body = \"0KiB\"",
            "[server].max_request_body: must be larger than zero",
        ),
        (
            "max_request_body = \"10 megs\"",
            "[server].max_request_body: \"10 megs\" is not a size like \"512KiB\"",
        ),
    ];
    for (line, want) in cases {
        let p = problems(&format!("[server]\n{line}\n"));
        assert!(p.iter().any(|l| l.contains(want)), "{line}: {p:?}");
    }
    let p = problems(&format!("{MINIMAL_ROUTE}max_request_body = \"lots\"\n"));
    assert!(
        p.iter()
            .any(|l| l.contains("[[routes]] \"mail\".max_request_body: \"lots\" is not a size")),
        "{p:?}"
    );
}

#[test]
fn redis_stores_take_a_prefix_and_a_password_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("redis.pass"), "s3cret\n").expect("write");
    let at = |text: &str| Config::from_str(text, &dir.path().join("gateway.toml"));
    let c = at("[oauth]\nstore = \"redis://127.0.0.1:6379/2\"").expect("valid");
    let StoreSpec::Redis(redis) = &c.oauth.store else {
        panic!("not redis: {:?}", c.oauth.store)
    };
    assert_eq!(redis.prefix, "tollgate:");
    assert!(redis.password.is_none());
    let c = at(
        "[oauth]\nstore = \"rediss://cache.internal:6380/0\"\nstore_prefix = \"edge-a:\"\nstore_password_file = \"redis.pass\"",
    )
    .expect("valid");
    let StoreSpec::Redis(redis) = &c.oauth.store else {
        panic!("not redis: {:?}", c.oauth.store)
    };
    assert_eq!(redis.prefix, "edge-a:");
    assert_eq!(redis.password.as_ref().map(Secret::expose), Some("s3cret"));
}

#[test]
fn sentinel_and_cluster_stores_are_read_with_the_password_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("redis.pass"), "s3cret\n").expect("write");
    let at = |text: &str| Config::from_str(text, &dir.path().join("gateway.toml"));
    let node = |host: &str, port| RedisNode {
        host: host.to_string(),
        port,
    };
    let c = at(
        "[oauth]\nstore = \"redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/3\"\nstore_password_file = \"redis.pass\"",
    )
    .expect("valid");
    let StoreSpec::Redis(redis) = &c.oauth.store else {
        panic!("not redis: {:?}", c.oauth.store)
    };
    assert_eq!(
        redis.topology,
        RedisTopology::Sentinel {
            sentinels: vec![node("10.0.0.1", 26379), node("10.0.0.2", 26379)],
            master: "mymaster".to_string(),
            db: 3,
        }
    );
    assert_eq!(redis.password.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(
        c.oauth.store.to_string(),
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/3"
    );
    let c = at("[oauth]\nstore = \"redis+cluster://a:7000,[::1]:7001\"\nstore_prefix = \"edge:\"")
        .expect("valid");
    let StoreSpec::Redis(redis) = &c.oauth.store else {
        panic!("not redis: {:?}", c.oauth.store)
    };
    assert_eq!(
        redis.topology,
        RedisTopology::Cluster {
            nodes: vec![node("a", 7000), node("::1", 7001)],
        }
    );
    assert_eq!(redis.prefix, "edge:");
    assert!(redis.password.is_none());
    assert_eq!(
        c.oauth.store.to_string(),
        "redis+cluster://a:7000,[::1]:7001"
    );
}

#[test]
fn bad_redis_store_settings_are_refused_naming_the_key() {
    let cases = [
        (
            "store = \"redis+sentinel://h:26379\"",
            "[oauth].store: \"redis+sentinel://h:26379\": no master name",
        ),
        (
            "store = \"redis+sentinel://h:port/mymaster/0\"",
            "[oauth].store: \"redis+sentinel://h:port/mymaster/0\": \"h:port\": the port \"port\" is not a number",
        ),
        (
            "store = \"redis+sentinel:///mymaster/0\"",
            "[oauth].store: \"redis+sentinel:///mymaster/0\": no HOST:PORT",
        ),
        (
            "store = \"redis+cluster://h:7000,h:7001/0\"",
            "[oauth].store: \"redis+cluster://h:7000,h:7001/0\": a Redis Cluster has no database number",
        ),
        (
            "store = \"redis+cluster://h\"",
            "[oauth].store: \"redis+cluster://h\": \"h\" has no port",
        ),
        (
            "store = \"redis+cluster://:pw@h:7000\"",
            "[oauth].store: a redis+cluster:// URL takes no user or password",
        ),
        (
            "store = \"redis+unix:///tmp/r.sock\"",
            "[oauth].store: \"redis+unix:///tmp/r.sock\" is not \"memory\"",
        ),
        (
            "store = \"redis+cluster://h:7000\"\nstore_prefix = \"\"",
            "[oauth].store_prefix: must not be empty",
        ),
        ("store = \"redis://h:notaport/0\"", "[oauth].store: \"redis://h:notaport/0\" is not a Redis URL"),
        (
            "store = \"memory\"\nstore_prefix = \"x:\"",
            "[oauth].store_prefix: only used with a Redis store",
        ),
        (
            "store = \"sqlite:t.db\"\nstore_password_file = \"p\"",
            "[oauth].store_password_file: only used with a Redis store",
        ),
        (
            "store = \"redis://h:6379/0\"\nstore_prefix = \"\"",
            "[oauth].store_prefix: must not be empty",
        ),
        (
            "store = \"redis://:pw@h:6379/0\"\nstore_password_file = \"/dev/null\"",
            "[oauth].store_password_file: set a password in [oauth].store or store_password_file, not both",
        ),
    ];
    for (oauth, want) in cases {
        let p = problems(&format!("[oauth]\n{oauth}"));
        assert!(p.iter().any(|l| l.contains(want)), "{oauth}: {p:?}");
    }
}

#[test]
fn a_redis_password_never_shows_in_the_store_description() {
    let c = parse_str("[oauth]\nstore = \"redis://:hunter2@127.0.0.1:6379/0\"").expect("valid");
    let shown = format!("{} {:?}", c.oauth.store, c.oauth.store);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("redis://***@127.0.0.1:6379/0"), "{shown}");
    for bad in [
        "redis://:hunter2@h:bad/0",
        "redis+sentinel://:hunter2@h:26379/m/0",
        "redis+cluster://u:hunter2@h:bad",
        "redis+nope://:hunter2@h:1",
    ] {
        let p = problems(&format!("[oauth]\nstore = \"{bad}\""));
        assert!(!p.is_empty(), "{bad} accepted");
        assert!(!p.join("\n").contains("hunter2"), "{p:?}");
    }
}

/// Found by the `config_load` fuzz target: `http::Uri` reads an empty host, and a port that
/// is not a number or out of range, as "no port", so traffic would go elsewhere than written.
#[test]
fn upstreams_with_an_empty_host_or_a_bad_port_are_refused() {
    for bad in [
        "http://:8080",
        "http://@:8080",
        "http://x:port",
        "http://x:99999",
        "http://x:0",
        "http://[::1]:bbbb",
    ] {
        let text = MINIMAL_ROUTE.replace("http://127.0.0.1:3000", bad);
        assert_ne!(
            text, MINIMAL_ROUTE,
            "the test route's upstream was replaced"
        );
        let p = problems(&text);
        assert!(p.iter().any(|l| l.contains(".upstream:")), "{bad}: {p:?}");
    }
    for good in [
        "http://x",
        "http://x:/",
        "http://[::1]:8443",
        "https://x:443/base",
    ] {
        let text = MINIMAL_ROUTE.replace("http://127.0.0.1:3000", good);
        assert!(parse_str(&text).is_ok(), "{good}: {:?}", problems(&text));
    }
}

/// A config directory with a P-256 key, an Ed25519 key, an RSA-looking file and junk.
fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    let es = crate::jwt::SigningKey::generate_pem(crate::jwt::Alg::Es256).expect("gen");
    let ed = crate::jwt::SigningKey::generate_pem(crate::jwt::Alg::EdDsa).expect("gen");
    write("es.pem", &es);
    write("ed.pem", &ed);
    write("junk.pem", "not a key\n");
    write(
        "sec1.pem",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n",
    );
    dir
}

fn parse_in(dir: &tempfile::TempDir, text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, &dir.path().join("gateway.toml"))
}

#[test]
fn jwt_tokens_load_the_signing_key_and_the_previous_ones() {
    let dir = key_dir();
    let c = parse_in(
        &dir,
        "[oauth]\ntoken_format = \"jwt\"\nsigning_key = \"ed.pem\"\nsigning_keys_previous = [\"es.pem\"]\n",
    )
    .expect("valid");
    let keys = c.oauth.token_format.keys().expect("jwt");
    assert_eq!(keys.current.alg(), crate::jwt::Alg::EdDsa);
    assert_eq!(keys.public.len(), 2);
    assert_eq!(keys.jwks()["keys"][1]["kty"], "EC");
    let c = parse_str("").expect("valid");
    assert!(c.oauth.token_format.keys().is_none(), "opaque by default");
}

#[test]
fn bad_jwt_settings_are_refused_naming_the_key() {
    let dir = key_dir();
    let cases = [
        ("token_format = \"paseto\"", "[oauth].token_format: \"paseto\" is not"),
        ("token_format = \"jwt\"", "[oauth].signing_key: required when token_format"),
        (
            "token_format = \"jwt\"\nsigning_key = \"missing.pem\"",
            "[oauth].signing_key: \"missing.pem\": cannot read",
        ),
        (
            "token_format = \"jwt\"\nsigning_key = \"junk.pem\"",
            "[oauth].signing_key: \"junk.pem\": no PEM private key",
        ),
        (
            "token_format = \"jwt\"\nsigning_key = \"sec1.pem\"",
            "openssl pkcs8 -topk8",
        ),
        (
            "token_format = \"jwt\"\nsigning_key = \"es.pem\"\nsigning_keys_previous = [\"junk.pem\"]",
            "[oauth].signing_keys_previous: \"junk.pem\"",
        ),
        (
            "token_format = \"jwt\"\nsigning_key = \"es.pem\"\nsigning_keys_previous = [\"es.pem\"]",
            "is listed twice",
        ),
        (
            "signing_key = \"es.pem\"",
            "[oauth].signing_key: only used with token_format = \"jwt\"",
        ),
    ];
    for (keys, want) in cases {
        let Err(err) = parse_in(&dir, &format!("[oauth]\n{keys}\n")) else {
            panic!("{keys}: accepted");
        };
        let text = err.to_string();
        assert!(text.contains(want), "{keys}: {text}");
    }
}

#[test]
fn jwks_verify_needs_a_url_and_an_issuer() {
    let ok = "[verify]\nsource = \"jwks\"\njwks_url = \"https://as.example.com/jwks\"\nissuer = \"https://as.example.com\"\n";
    let c = parse_str(ok).expect("valid");
    let VerifySource::Jwks(j) = &c.verify.source else {
        panic!("not jwks");
    };
    assert_eq!(j.jwks_url, "https://as.example.com/jwks");
    assert_eq!(j.issuer, "https://as.example.com");
    assert_eq!(j.timeout, Duration::from_secs(5));
    let p = problems("[verify]\nsource = \"jwks\"\n").join("\n");
    assert!(
        p.contains("[verify].jwks_url: an http(s) URL is required"),
        "{p}"
    );
    assert!(
        p.contains("[verify].issuer: the issuer's identifier"),
        "{p}"
    );
    let p = problems("[verify]\njwks_url = \"https://as.example.com/jwks\"\n").join("\n");
    assert!(
        p.contains("[verify].jwks_url: only used with source = \"jwks\""),
        "{p}"
    );
    let p = problems(&format!("{ok}client_id = \"gw\"\n")).join("\n");
    assert!(
        p.contains("[verify].client_id: only used with source = \"remote\""),
        "{p}"
    );
}

#[test]
fn the_upstream_pool_budget_has_its_defaults_and_refuses_bad_values_naming_the_key() {
    let c = parse_str(MINIMAL_ROUTE).expect("valid");
    assert_eq!(c.server.upstream_pool, PoolBudget::default());
    assert_eq!(c.server.upstream_pool.max_idle, 1024);
    assert_eq!(c.server.upstream_pool.idle_timeout, Duration::from_secs(90));
    let c = parse_str(&format!(
        "[server]\nupstream_max_idle = 0\nupstream_idle_timeout = \"5s\"\n{MINIMAL_ROUTE}"
    ))
    .expect("valid");
    assert_eq!(
        c.server.upstream_pool,
        PoolBudget {
            max_idle: 0,
            idle_timeout: Duration::from_secs(5)
        }
    );
    let cases = [
        (
            "upstream_max_idle = 65537",
            "[server].upstream_max_idle: 65537 is more than 65536",
        ),
        ("upstream_max_idle = -1", "[server]: invalid value"),
        (
            "upstream_idle_timeout = \"0s\"",
            "[server].upstream_idle_timeout: must be longer than zero",
        ),
        (
            "upstream_idle_timeout = \"soon\"",
            "[server].upstream_idle_timeout: \"soon\" is not a duration",
        ),
    ];
    for (line, want) in cases {
        let p = problems(&format!("[server]\n{line}\n"));
        assert!(p.iter().any(|l| l.contains(want)), "{line}: {p:?}");
    }
}

#[test]
fn upstream_ca_is_read_at_load_and_refused_naming_the_key_unless_it_holds_ca_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("CA certificate")
    };
    let files = [
        ("ca.pem", ca.pem()),
        ("empty.pem", "no PEM here\n".to_string()),
        (
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string(),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let at = |file: &str| {
        let text = format!("[server]\nupstream_ca = \"{file}\"\n{MINIMAL_ROUTE}");
        Config::from_str(&text, &dir.path().join("gateway.toml"))
    };
    let c = at("ca.pem").expect("valid");
    assert_eq!(c.server.upstream_ca, vec![ca.der().clone()]);
    assert!(parse_str(MINIMAL_ROUTE)
        .expect("valid")
        .server
        .upstream_ca
        .is_empty());
    let cases = [
        (
            "missing.pem",
            "[server].upstream_ca: cannot read \"missing.pem\"",
        ),
        (
            "empty.pem",
            "[server].upstream_ca: \"empty.pem\" holds no PEM certificate",
        ),
        (
            "broken.pem",
            "[server].upstream_ca: certificate 1 in \"broken.pem\" is not a usable CA certificate",
        ),
    ];
    for (file, want) in cases {
        let p = match at(file) {
            Ok(_) => panic!("{file}: expected the config to be refused"),
            Err(e) => e.to_string(),
        };
        assert!(p.contains(want), "{file}: {p}");
    }
}

#[test]
fn an_https_upstream_needs_a_host_a_certificate_can_name() {
    let route = |url: &str| {
        format!("[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"{url}\"\n")
    };
    for ok in [
        "https://api.example.com",
        "https://127.0.0.1:8443",
        "https://[::1]:8443",
    ] {
        assert!(parse_str(&route(ok)).is_ok(), "{ok}");
    }
    let p = problems(&route("https://-bad-.example")).join("\n");
    assert!(
        p.contains("the host is not a name a TLS certificate can carry"),
        "{p}"
    );
    assert!(
        parse_str(&route("http://-bad-.example")).is_ok(),
        "plain HTTP needs no name"
    );
}
