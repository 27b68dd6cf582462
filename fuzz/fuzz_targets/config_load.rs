//! The config loader (`Config::from_str`, as if the text were a file in a directory that
//! does not exist, so relative `*_file` keys read nothing). Never panics; an error names
//! at least one problem and renders; an accepted config has routes the gateway can build:
//! normal, distinct-by-name prefixes on segment boundaries, http(s) upstreams with a host
//! and a valid port, and scope names that are RFC 6749 scope-tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tollgate::config::is_scope_token;
use tollgate::gateway::route::{normalise_path, RouteTable};
use tollgate::gateway::upstream::UpstreamPool;
use tollgate::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::from_str(text, Path::new("/nonexistent/tollgate-fuzz/gateway.toml"))
    {
        Ok(config) => config,
        Err(e) => {
            assert!(e.problem_count() > 0);
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    for (i, route) in config.routes.iter().enumerate() {
        assert!(
            config.routes[..i].iter().all(|r| r.name != route.name),
            "route name {:?} twice",
            route.name
        );
        let prefix = &route.path_prefix;
        assert!(prefix.starts_with('/'), "{prefix:?}");
        assert!(prefix == "/" || !prefix.ends_with('/'), "{prefix:?}");
        assert_eq!(
            normalise_path(prefix).as_deref(),
            Ok(prefix.as_str()),
            "a prefix no normal path can match"
        );
        assert!(!route.upstreams.is_empty());
        for uri in &route.upstreams {
            assert!(
                matches!(uri.scheme_str(), Some("http") | Some("https")),
                "{uri}"
            );
            // An empty host cannot be connected to; a port that is not a number (or is out
            // of range) is read as none by `http::Uri`, so traffic would go to the scheme's
            // default port instead of the one configured.
            assert!(uri.host().is_some_and(|h| !h.is_empty()), "{uri}");
            assert!(port_is_valid(uri), "{uri}");
        }
        assert_eq!(
            UpstreamPool::new(&route.upstreams).len(),
            route.upstreams.len()
        );
        assert!(route.scopes.iter().all(|s| is_scope_token(s)));
    }
    let table = RouteTable::new(
        config
            .routes
            .iter()
            .map(|r| (r.host.as_deref(), r.path_prefix.as_str())),
    );
    for (i, route) in config.routes.iter().enumerate() {
        // Every route is reachable by its own prefix (unless a twin with the same host and
        // prefix shadows it, which the loader should refuse).
        let found = table.find(route.host.as_deref(), &route.path_prefix);
        assert_eq!(found, Some(i), "route {:?} is shadowed", route.name);
    }
    for client in &config.clients {
        assert!(client.scopes.iter().all(|s| is_scope_token(s)));
    }
});

/// The port text of the URL's authority, if any, is empty or a port number.
fn port_is_valid(uri: &http::Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    let after_ipv6 = host_port.rsplit_once(']').map_or(host_port, |(_, r)| r);
    match after_ipv6.rsplit_once(':') {
        None => true,
        Some((_, port)) => port.is_empty() || port.parse::<u16>().is_ok_and(|p| p != 0),
    }
}
