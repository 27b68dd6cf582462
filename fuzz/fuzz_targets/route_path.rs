//! Path normalisation and route matching (`route::normalise_path`, `RouteTable::find`,
//! `route::strip_prefix`, and the upstream base-path join of `upstream::Target`). Input:
//! a host line (empty: no host), then the raw path. A normalised path starts with `/`, has
//! no `.`/`..` segment, no `//` and no encoded separator, and normalises to itself; the
//! route found is the longest matching prefix; what is forwarded stays under the matched
//! prefix, and under the upstream's base path once joined.
#![no_main]

use http::uri::PathAndQuery;
use http::Uri;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::gateway::route::{
    normalise_host, normalise_path, prefix_matches, strip_prefix, RouteTable,
};
use tollgate::gateway::upstream::UpstreamPool;

/// (host, prefix, strip_prefix, upstream base URL)
const ROUTES: &[(Option<&str>, &str, bool, &str)] = &[
    (None, "/", false, "http://127.0.0.1:9"),
    (None, "/api/mail", true, "http://127.0.0.1:9/v1/mail"),
    (
        None,
        "/api/mail/admin",
        false,
        "http://127.0.0.1:9/internal/",
    ),
    (
        Some("api.example.com"),
        "/api",
        true,
        "http://127.0.0.1:9/base",
    ),
    (None, "/static", true, "http://127.0.0.1:9/assets/v2"),
    (None, "/a.b/~c", false, "http://127.0.0.1:9/x"),
];

struct Fixture {
    table: RouteTable,
    pools: Vec<UpstreamPool>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        table: RouteTable::new(ROUTES.iter().map(|r| (r.0, r.1))),
        pools: ROUTES
            .iter()
            .map(|r| UpstreamPool::new(&[r.3.parse::<Uri>().expect("fixture URL")]))
            .collect(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (host_line, raw) = text.split_once('\n').unwrap_or(("", text));
    let host = (!host_line.is_empty()).then(|| normalise_host(host_line));
    // The gateway normalises the target's path, without its query.
    let raw_path = raw.split_once('?').map_or(raw, |(p, _)| p);
    let Ok(path) = normalise_path(raw_path) else {
        return;
    };
    check_normal(&path);
    assert_eq!(normalise_path(&path).as_deref(), Ok(&*path), "idempotent");

    let f = fixture();
    let found = f.table.find(host.as_deref(), &path);
    let best = ROUTES
        .iter()
        .enumerate()
        .filter(|(_, r)| r.0.is_none_or(|h| host.as_deref() == Some(h)))
        .filter(|(_, r)| prefix_matches(r.1, &path))
        .max_by_key(|(i, r)| (r.1.len(), r.0.is_some(), std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    assert_eq!(
        found.map(|i| ROUTES[i].1.len()),
        best.map(|i| ROUTES[i].1.len())
    );
    let Some(index) = found else {
        return;
    };
    let (_, prefix, strip, base) = ROUTES[index];
    assert!(prefix_matches(prefix, &path));
    let forwarded = if strip {
        strip_prefix(prefix, &path)
    } else {
        &path
    };
    assert!(forwarded.starts_with('/'));
    if strip && prefix != "/" && forwarded != "/" {
        assert_eq!(
            format!("{prefix}{forwarded}"),
            *path,
            "stripping only removes the prefix"
        );
    }
    if !strip {
        assert!(prefix_matches(prefix, forwarded));
    }
    check_under_base(&f.pools[index], base, raw, forwarded);
});

fn check_normal(path: &str) {
    assert!(path.starts_with('/'));
    assert!(!path.contains("//"), "{path:?}");
    assert!(
        !path[1..].split('/').any(|s| s == "." || s == ".."),
        "{path:?}"
    );
    // Issue 8 finding 6: a raw `\` or `;` is refused, never normalised into a path.
    assert!(!path.contains(['\\', ';']), "{path:?}");
    let upper = path.to_ascii_uppercase();
    for encoded in ["%2F", "%5C", "%00", "%2E"] {
        assert!(!upper.contains(encoded), "{path:?} keeps {encoded}");
    }
}

/// The upstream's path is the base path, then the forwarded path: it never climbs out.
fn check_under_base(pool: &UpstreamPool, base: &str, raw: &str, forwarded: &str) {
    let Ok(original) = PathAndQuery::try_from(raw) else {
        return;
    };
    if raw.split_once('?').map_or(raw, |(p, _)| p) != original.path() {
        return;
    }
    let target = pool.pick().expect("one target that is never marked down");
    let upstream_pq = target.path_and_query(&original, forwarded);
    let upstream_path = upstream_pq.split('?').next().unwrap_or_default();
    let base_path = base
        .parse::<Uri>()
        .expect("fixture URL")
        .path()
        .trim_end_matches('/')
        .to_string();
    let base_path = if base_path.is_empty() {
        "/".to_string()
    } else {
        base_path
    };
    assert!(
        prefix_matches(&base_path, upstream_path),
        "{upstream_path:?}"
    );
    let resolved = normalise_path(upstream_path).expect("a joined path is still valid");
    assert!(
        prefix_matches(&base_path, &resolved),
        "{upstream_path:?} climbs"
    );
    assert!(target.uri(forwarded, original.query()).is_ok());
}
