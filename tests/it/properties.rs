//! Property tests (proptest) for invariants a table of cases cannot cover: routed paths never
//! climb above a route's upstream base, the fast lane reads every head it takes exactly as
//! hyper does, and a cached verdict never skips the scope check. Each runs a bounded number
//! of generated cases (seconds, not minutes); the fuzz targets in fuzz/ push the same rules
//! much further on nightly.

use crate::common::{self, hyper_head, remote_verify, route, Introspector, TestGateway, Upstream};
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::Uri;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tollgate::gateway::fast::wire::{parse_request, ParsedRequest};
use tollgate::gateway::route::{normalise_path, prefix_matches, strip_prefix, RouteTable};
use tollgate::gateway::upstream::UpstreamPool;

fn config(cases: u32) -> RunnerConfig {
    RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    }
}

// === normalised paths stay under the route's base ===

/// Segments that try to climb or hide: dot segments in every spelling, empty segments.
fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "..", ".", "", "%2e%2e", "%2E.", ".%2e", "%2e", "api", "mail", "admin", "a", "%7e", "%41b",
        "x%20y", "%C3%A9", "...", "..a",
    ])
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..10).prop_map(|s| format!("/{}", s.join("/")))
}

/// (path_prefix, strip_prefix, upstream base URL)
const ROUTES: &[(&str, bool, &str)] = &[
    ("/", false, "http://127.0.0.1:9"),
    ("/api", true, "http://127.0.0.1:9/base/"),
    ("/api/mail", true, "http://127.0.0.1:9/v1/mail"),
    ("/api/mail/admin", false, "http://127.0.0.1:9/internal"),
];

proptest! {
    #![proptest_config(config(2048))]

    /// Whatever dot segments or encodings a path carries, the matched route's prefix
    /// covers the normalised path, and the upstream's path (base + forwarded path) stays
    /// under the upstream's base path, before and after the upstream resolves it again.
    #[test]
    fn normalised_paths_never_climb_above_the_route_base(raw in raw_path()) {
        let Ok(path) = normalise_path(&raw) else {
            return Ok(());
        };
        prop_assert!(!path.contains("//"));
        prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
        let again = normalise_path(&path);
        prop_assert_eq!(again.as_deref(), Ok(&*path));
        let table = RouteTable::new(ROUTES.iter().map(|r| (None, r.0)));
        let index = table.find(None, &path).expect("the `/` route matches every path");
        let (prefix, strip, base) = ROUTES[index];
        prop_assert!(prefix_matches(prefix, &path));
        let forwarded = if strip { strip_prefix(prefix, &path) } else { &path };
        prop_assert!(forwarded.starts_with('/'));

        let base_uri: Uri = base.parse().expect("fixture URL");
        let base_path = match base_uri.path().trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        let pool = UpstreamPool::new(std::slice::from_ref(&base_uri));
        let target = pool.pick().expect("one target");
        let original = PathAndQuery::try_from(raw.as_str()).expect("generated paths are valid");
        let upstream = target.path_and_query(&original, forwarded);
        prop_assert!(prefix_matches(base_path, &upstream), "{upstream}");
        let resolved = normalise_path(&upstream).expect("a joined path is valid");
        prop_assert!(prefix_matches(base_path, &resolved), "{upstream} climbs to {resolved}");
        let uri = target.uri(forwarded, None).expect("a joined path is a URI");
        prop_assert_eq!(uri.path(), &*upstream);
    }
}

// === the fast lane reads a head as hyper does ===

/// Mostly `usual` pieces, now and then an `odd` one.
fn mostly(
    usual: Vec<&'static str>,
    odd: Vec<&'static str>,
) -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![8 => prop::sample::select(usual), 1 => prop::sample::select(odd)]
}

/// Request heads built from pieces, most of them valid and some of them the odd bytes
/// (spaces, tabs, bare LF or CR, obs-fold, control and non-ASCII bytes, framing and
/// upgrade headers) where the two parsers could part ways.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = mostly(vec!["GET", "HEAD"], vec!["get", "POST", "GET\t", "OPTIONS"]);
    let target = prop::collection::vec(
        mostly(
            vec!["/", "a", "b", "%2e", "?", "=", "&", "~", ".", "-"],
            vec![
                "#", "*", "\\", ";", "%", " ", "\u{e9}", "\x7f", "//", "\"", "<", "|",
            ],
        ),
        0..8,
    )
    .prop_map(|parts| format!("/{}", parts.concat()));
    let version = mostly(
        vec![" HTTP/1.1"],
        vec![
            " HTTP/1.0",
            "  HTTP/1.1",
            " HTTP/1.1 ",
            " http/1.1",
            " HTTP/2.0",
            "\tHTTP/1.1",
        ],
    );
    let eol = mostly(vec!["\r\n"], vec!["\n", "\r", "\r\n "]);
    let name = mostly(
        vec![
            "Host",
            "Accept",
            "X-A",
            "x-b",
            "Authorization",
            "Cookie",
            "X_Auth_Subject",
        ],
        vec![
            "Connection",
            "Content-Length",
            "Transfer-Encoding",
            "Upgrade",
            "Expect",
            "Te",
            "Bad Name",
            "",
            "X:Y",
            "X\u{e9}",
            "X\x00",
        ],
    );
    let sep = mostly(vec![": ", ":"], vec![":\t", " : ", ":  ", " :"]);
    let value = prop::collection::vec(
        mostly(
            vec!["a", "keep-alive", "Bearer x", " ", ",", "\"", "=", "/"],
            vec![
                "\t", "close", "\x00", "\x01", "\x7f", "\u{e9}", "\r\n ", "\n", "\r",
            ],
        ),
        0..5,
    )
    .prop_map(|parts| parts.concat());
    let header = (name, sep, value, eol.clone());
    (
        method,
        target,
        version,
        eol.clone(),
        prop::collection::vec(header, 0..6),
        eol,
    )
        .prop_map(|(method, target, version, eol, headers, end)| {
            let mut head = format!("{method} {target}{version}{eol}");
            for (n, s, v, e) in headers {
                head.push_str(&format!("{n}{s}{v}{e}"));
            }
            head.push_str(end);
            head.into_bytes()
        })
}

#[test]
fn fast_lane_takes_only_heads_hyper_reads_the_same() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let taken = AtomicUsize::new(0);
    let mut runner = TestRunner::new(config(1024));
    runner
        .run(&request_head(), |bytes| {
            let buf = Bytes::from(bytes.clone());
            let ParsedRequest::Complete(head) = parse_request(&buf) else {
                return Ok(());
            };
            taken.fetch_add(1, Ordering::Relaxed);
            let fast = hyper_head::Head::of_fast_lane(&head);
            let hyper = hyper_head::parse_with_hyper(&rt, &bytes[..head.len]);
            prop_assert_eq!(Some(fast), hyper, "{:?}", String::from_utf8_lossy(&bytes));
            Ok(())
        })
        .expect("the fast lane and hyper agree");
    // Not vacuous: a good share of the generated heads are ones the fast lane takes.
    assert!(taken.load(Ordering::Relaxed) > 200, "{taken:?} heads taken");
}

// === a cached verdict still meets the scope check ===

const SCOPES: [&str; 3] = ["email", "email.send", "admin"];

/// Routes needing each subset of scopes an interesting test needs: none, one, two.
const SCOPE_ROUTES: &[(&str, &[&str])] = &[
    ("/r0", &[]),
    ("/r1", &["email"]),
    ("/r2", &["email.send"]),
    ("/r3", &["email", "admin"]),
];

#[test]
fn cached_verdict_never_skips_the_scope_check() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let (introspector, _up, gw) = rt.block_on(async {
        let introspector = Introspector::spawn(Duration::ZERO).await;
        let up = Upstream::echo().await;
        let mut toml = remote_verify(&introspector, "cache_ttl = \"60s\"");
        for (i, (prefix, scopes)) in SCOPE_ROUTES.iter().enumerate() {
            let scopes = scopes
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ");
            toml.push_str(&route(
                &format!("r{i}"),
                prefix,
                &up.url(),
                &format!("auth = \"bearer\"\nscopes = [{scopes}]"),
            ));
        }
        (introspector, up, TestGateway::spawn(&toml).await)
    });
    let http1 = common::client();
    let http2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client builds");
    let next_token = AtomicUsize::new(0);
    let granted = prop::sample::subsequence(SCOPES.to_vec(), 0..=SCOPES.len());
    let mut runner = TestRunner::new(config(24));
    runner
        .run(&(granted, 0..SCOPE_ROUTES.len()), |(granted, r)| {
            let token = format!("prop-{}", next_token.fetch_add(1, Ordering::Relaxed));
            introspector.active(&token, "alice", &granted.join(" "));
            let (prefix, required) = SCOPE_ROUTES[r];
            let want = if required.iter().all(|s| granted.contains(s)) {
                200
            } else {
                403
            };
            let calls = introspector.calls();
            let url = gw.url(prefix);
            let statuses: Vec<u16> = rt.block_on(async {
                let mut statuses = Vec::new();
                // A miss on the fast lane, then hits through hyper (HTTP/2) and the fast lane.
                for client in [&http1, &http2, &http1] {
                    let response = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("sent");
                    statuses.push(response.status().as_u16());
                }
                statuses
            });
            prop_assert_eq!(
                statuses,
                vec![want; 3],
                "granted {:?} on {}",
                granted,
                prefix
            );
            prop_assert_eq!(introspector.calls(), calls + 1, "one miss, then hits");
            Ok(())
        })
        .expect("every cached request meets the scope check");
}
