//! `[[clients]]` and `[[routes]]`: each entry checked on its own, problems collected.

use super::checker::{is_identifier, is_scope_token, Checker};
use super::raw::{RawClient, RawRoute};
use super::{AuthMode, ClientConfig, DpopMode, GrantType, OAuthConfig, RouteConfig, WhenStoreDown};

pub(super) fn clients(
    ck: &mut Checker,
    raw: Vec<RawClient>,
    oauth: &OAuthConfig,
    scopes_known: bool,
) -> Vec<ClientConfig> {
    let mut out: Vec<ClientConfig> = Vec::new();
    for c in raw {
        let key = format!("[[clients]] {:?}", c.id);
        if c.id.is_empty() || !c.id.chars().all(|ch| ch.is_ascii_graphic() && ch != ':') {
            ck.problem(
                format!("{key}.id"),
                "must be non-empty printable ASCII without ':'",
            );
        }
        if out.iter().any(|o| o.id == c.id) {
            ck.problem(format!("{key}.id"), "another client has the same id");
        }
        let mut grant_types = Vec::new();
        for g in &c.grant_types {
            match GrantType::parse(g) {
                Some(gt) => grant_types.push(gt),
                None => ck.problem(
                    format!("{key}.grant_types"),
                    format!("{g:?} is not a grant type"),
                ),
            }
        }
        for s in &c.scopes {
            if scopes_known && !oauth.scopes.contains_key(s) {
                ck.problem(
                    format!("{key}.scopes"),
                    format!("{s:?} is not listed in [oauth.scopes]"),
                );
            }
        }
        for u in &c.redirect_uris {
            if !is_redirect_uri(u) {
                ck.problem(
                    format!("{key}.redirect_uris"),
                    format!("{u:?} is not an absolute URL without a fragment"),
                );
            }
        }
        let needs_redirect = grant_types
            .iter()
            .any(|g| matches!(g, GrantType::AuthorizationCode | GrantType::Implicit));
        if needs_redirect && c.redirect_uris.is_empty() {
            ck.problem(
                format!("{key}.redirect_uris"),
                "required for authorization_code or implicit clients",
            );
        }
        let machine_grant = grant_types
            .iter()
            .any(|g| matches!(g, GrantType::ClientCredentials | GrantType::Password));
        if c.secret_hash.is_none() && (machine_grant || c.introspect) {
            ck.problem(
                format!("{key}.secret_hash"),
                "required for client_credentials, password or introspect (a public client cannot authenticate)",
            );
        }
        let dpop = match c.dpop.as_deref() {
            None | Some("optional") => DpopMode::Optional,
            Some("required") => DpopMode::Required,
            Some(other) => {
                ck.problem(
                    format!("{key}.dpop"),
                    format!("{other:?} is not \"optional\" or \"required\""),
                );
                DpopMode::Optional
            }
        };
        if dpop == DpopMode::Required && grant_types.contains(&GrantType::Implicit) {
            ck.problem(
                format!("{key}.dpop"),
                "\"required\" leaves the implicit grant unusable (a redirect carries no DPoP proof)",
            );
        }
        out.push(ClientConfig {
            name: c.name.unwrap_or_else(|| c.id.clone()),
            id: c.id,
            secret_hash: c.secret_hash,
            redirect_uris: c.redirect_uris,
            grant_types,
            scopes: c.scopes,
            introspect: c.introspect,
            dpop,
        });
    }
    out
}

/// `default_body` is `[server].max_request_body`, for routes without their own.
pub(super) fn routes(ck: &mut Checker, raw: Vec<RawRoute>, default_body: u64) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::new();
    for r in raw {
        let key = format!("[[routes]] {:?}", r.name);
        if r.name.is_empty()
            || r.name.starts_with('_')
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            ck.problem(
                format!("{key}.name"),
                "use letters, digits, '-', '_' and '.', not starting with '_'",
            );
        }
        if out.iter().any(|o| o.name == r.name) {
            ck.problem(format!("{key}.name"), "another route has the same name");
        }
        if let Err(why) = check_path_prefix(&r.path_prefix) {
            ck.problem(format!("{key}.path_prefix"), why);
        }
        let host = r.host.as_deref().map(|h| h.trim().to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ':', ' ', '@']) {
                ck.problem(
                    format!("{key}.host"),
                    format!("{h:?} is not a host name (no port, no path)"),
                );
            }
        }
        let prefix = normalise_prefix(&r.path_prefix);
        if out
            .iter()
            .any(|o| o.host == host && o.path_prefix == prefix)
        {
            ck.problem(
                format!("{key}.path_prefix"),
                "another route has the same host and path_prefix",
            );
        }
        let urls = r.upstream.urls();
        if urls.is_empty() {
            ck.problem(
                format!("{key}.upstream"),
                "at least one upstream URL is required",
            );
        }
        let mut upstreams = Vec::new();
        for u in urls {
            // Messages show the URL with any credentials blanked: they end up in logs.
            let shown = redact_userinfo(u);
            match parse_upstream(u) {
                // Userinfo is never sent (the upstream's Host is host[:port]), and RFC 9110
                // §4.2.4 deprecates it; it is only a password waiting to leak into a log.
                Some(uri) if has_userinfo(&uri) => ck.problem(
                    format!("{key}.upstream"),
                    format!("{shown:?} has credentials (user:password@): not allowed here"),
                ),
                Some(uri) if !has_tls_name(&uri) => ck.problem(
                    format!("{key}.upstream"),
                    format!("{shown:?}: the host is not a name a TLS certificate can carry"),
                ),
                Some(uri) => upstreams.push(uri),
                None => ck.problem(
                    format!("{key}.upstream"),
                    format!("{shown:?} is not an http(s) URL"),
                ),
            }
        }
        let auth = match r.auth.as_deref().unwrap_or("bearer") {
            "bearer" => AuthMode::Bearer,
            "none" => AuthMode::None,
            other => {
                ck.problem(
                    format!("{key}.auth"),
                    format!("{other:?} is not \"bearer\" or \"none\""),
                );
                AuthMode::Bearer
            }
        };
        if auth == AuthMode::None && !r.scopes.is_empty() {
            ck.problem(format!("{key}.scopes"), "scopes need auth = \"bearer\"");
        }
        for s in &r.scopes {
            if !is_scope_token(s) {
                ck.problem(
                    format!("{key}.scopes"),
                    format!("{s:?} is not a valid scope name"),
                );
            }
        }
        if let Some(audience) = &r.audience {
            if auth == AuthMode::None {
                ck.problem(
                    format!("{key}.audience"),
                    "audience needs auth = \"bearer\"",
                );
            }
            if !is_identifier(audience) {
                ck.problem(
                    format!("{key}.audience"),
                    format!("{audience:?} is not a resource identifier (non-empty, no spaces or control characters)"),
                );
            }
        }
        let timeout = ck.duration(&format!("{key}.timeout"), r.timeout.as_deref(), "30s");
        if timeout.is_zero() {
            ck.problem(format!("{key}.timeout"), "must be longer than zero");
        }
        let when_store_down = match r.when_store_down.as_deref() {
            None | Some("serve_cached") => WhenStoreDown::ServeCached,
            Some("deny") => WhenStoreDown::Deny,
            Some(other) => {
                ck.problem(
                    format!("{key}.when_store_down"),
                    format!("{other:?} is not \"serve_cached\" or \"deny\""),
                );
                WhenStoreDown::ServeCached
            }
        };
        if r.when_store_down.is_some() && auth == AuthMode::None {
            ck.problem(
                format!("{key}.when_store_down"),
                "when_store_down needs auth = \"bearer\"",
            );
        }
        let max_request_body = ck.size(
            &format!("{key}.max_request_body"),
            r.max_request_body.as_deref(),
            default_body,
        );
        out.push(RouteConfig {
            name: r.name,
            path_prefix: prefix,
            host,
            upstreams,
            strip_prefix: r.strip_prefix,
            timeout,
            auth,
            scopes: r.scopes,
            audience: r.audience,
            max_request_body,
            when_store_down,
        });
    }
    out
}

fn check_path_prefix(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("must start with '/'");
    }
    // A ';' could never match: the gateway refuses raw ';' in request paths.
    if p.contains(['?', '#', '%', '\\', ';']) || p.contains("//") {
        return Err("must be a plain path: no '?', '#', '%', '\\', ';' or '//'");
    }
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("must not contain '.' or '..' segments");
    }
    Ok(())
}

/// `/api/mail/` and `/api/mail` mean the same prefix; keep the form without the slash.
fn normalise_prefix(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// An `https://` upstream's host is a DNS name or an IP address rustls can check its
/// certificate against (an `http://` one needs none).
fn has_tls_name(uri: &http::Uri) -> bool {
    let Some(host) = uri.host().filter(|_| uri.scheme_str() == Some("https")) else {
        return true;
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    rustls::pki_types::ServerName::try_from(bare).is_ok()
}

fn parse_upstream(u: &str) -> Option<http::Uri> {
    let uri: http::Uri = u.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http") | Some("https"));
    let has_query = uri.query().is_some();
    // `http::Uri` reads `http://:8080` as an empty host and `http://x:port` or
    // `http://x:99999` as no port at all (traffic would go to port 80): refuse both.
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    let port_ok = uri
        .authority()
        .is_some_and(|a| port_text_is_valid(a.as_str()));
    if !scheme_ok || !host_ok || !port_ok || has_query {
        return None;
    }
    Some(uri)
}

/// The port after the host (past any userinfo and IPv6 literal) is absent, empty or a port
/// number from 1 to 65535.
fn port_text_is_valid(authority: &str) -> bool {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, rest)| rest);
    match after_host.rsplit_once(':') {
        None => true,
        Some((_, port)) => port.is_empty() || port.parse::<u16>().is_ok_and(|p| p != 0),
    }
}

fn has_userinfo(uri: &http::Uri) -> bool {
    uri.authority().is_some_and(|a| a.as_str().contains('@'))
}

/// `u` with any `user:password@` replaced by `***@`, for logs and messages.
pub fn redact_userinfo(u: &str) -> std::borrow::Cow<'_, str> {
    let start = u.find("://").map_or(0, |i| i + 3);
    let end = u[start..]
        .find(['/', '?', '#'])
        .map_or(u.len(), |i| start + i);
    match u[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &u[..start], &u[start + at..]).into(),
        None => u.into(),
    }
}

fn is_redirect_uri(u: &str) -> bool {
    !u.contains('#')
        && u.parse::<http::Uri>()
            .map(|uri| uri.scheme().is_some() && uri.authority().is_some())
            .unwrap_or(false)
}
