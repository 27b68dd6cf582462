//! Raw TOML → typed [`Config`], collecting every problem with its key path.

use super::checker::{is_http_url, is_identifier, Checker};
use super::raw::{RawClient, RawLog, RawOAuth, RawRoute, RawServer, RawUsers, RawVerify};
use super::*;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:9090";
const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";
const DEFAULT_STORE: &str = "sqlite:data/tollgate.db";
const DEFAULT_STORE_PREFIX: &str = "tollgate:";
const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
const DEFAULT_MAX_REQUEST_BODY: u64 = 10 << 20;
const SECTIONS: &[&str] = &[
    "server", "oauth", "users", "clients", "verify", "routes", "log",
];

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                file: file.clone(),
                at: e
                    .span()
                    .map(|span| super::locate::LineIndex::new(text).at(span.start)),
                message: e.message().trim().replace('\n', " "),
            })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut ck = Checker::new(base);
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            ck.problem(
                key.clone(),
                format!("unknown section (expected one of {})", SECTIONS.join(", ")),
            );
        }
    }
    let raw_server: Option<RawServer> = ck.section("[server]", table.remove("server"));
    let raw_oauth: Option<RawOAuth> = ck.section("[oauth]", table.remove("oauth"));
    // A broken [oauth] leaves no scopes to check clients against: saying every client
    // scope is unknown would only repeat that one mistake.
    let scopes_known = raw_oauth.is_some();
    let table_had_users = table.contains_key("users");
    let raw_users: Option<RawUsers> = ck.section("[users]", table.remove("users"));
    let raw_verify: Option<RawVerify> = ck.section("[verify]", table.remove("verify"));
    let raw_clients: Vec<RawClient> = ck.entries("clients", table.remove("clients"));
    let raw_routes: Vec<RawRoute> = ck.entries("routes", table.remove("routes"));
    let raw_log: Option<RawLog> = ck.section("[log]", table.remove("log"));

    let server = server(&mut ck, raw_server.unwrap_or_default());
    let oauth = oauth(&mut ck, raw_oauth.unwrap_or_default());
    let users_required = table_had_users;
    let users = super::users::users(&mut ck, raw_users.unwrap_or_default(), users_required);
    let verify = verify(&mut ck, raw_verify.unwrap_or_default());
    let clients = super::entries::clients(&mut ck, raw_clients, &oauth, scopes_known);
    let routes = super::entries::routes(&mut ck, raw_routes, server.limits.max_request_body);
    let log = log(&mut ck, raw_log.unwrap_or_default());

    let locations = super::locate::Locations::of(text);
    let problems = ck.into_problems();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            file,
            problems: locations.locate(problems),
        });
    }
    Ok(Config {
        source: path.to_path_buf(),
        server,
        oauth,
        users,
        clients,
        verify,
        routes,
        log,
        locations,
    })
}

fn server(ck: &mut Checker, raw: RawServer) -> ServerConfig {
    let listen = ck.socket_addr(
        "[server].listen",
        raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    );
    let internal_listen = ck.socket_addr(
        "[server].internal_listen",
        raw.internal_listen
            .as_deref()
            .unwrap_or(DEFAULT_INTERNAL_LISTEN),
    );
    let limits = limits(ck, &raw);
    let upstream_pool = upstream_pool(ck, &raw);
    let upstream_ca = match raw.upstream_ca.as_deref() {
        Some(file) => upstream_ca(ck, file),
        None => Vec::new(),
    };
    let tls = raw.tls.map(|t| TlsConfig {
        listen: ck.socket_addr("[server.tls].listen", &t.listen),
        cert: ck.path(&t.cert),
        key: ck.path(&t.key),
        http1_fast_lane: true,
    });
    let trusted_proxies = trusted_proxies(ck, raw.trusted_proxies.as_deref().unwrap_or(&[]));
    ServerConfig {
        listen,
        internal_listen,
        tls,
        limits,
        trusted_proxies,
        upstream_pool,
        upstream_ca,
    }
}

/// `[server] upstream_ca`: a readable PEM file of one or more certificates, each one rustls
/// takes as a trust anchor.
fn upstream_ca(ck: &mut Checker, file: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    const KEY: &str = "[server].upstream_ca";
    let pem = match std::fs::read(ck.path(file)) {
        Ok(pem) => pem,
        Err(e) => {
            ck.problem(KEY, format!("cannot read {file:?}: {e}"));
            return Vec::new();
        }
    };
    let certs = match rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>() {
        Ok(certs) => certs,
        Err(e) => {
            ck.problem(KEY, format!("{file:?} is not valid PEM: {e}"));
            return Vec::new();
        }
    };
    if certs.is_empty() {
        ck.problem(KEY, format!("{file:?} holds no PEM certificate"));
    }
    for (i, cert) in certs.iter().enumerate() {
        let mut roots = rustls::RootCertStore::empty();
        if let Err(e) = roots.add(cert.clone()) {
            ck.problem(
                KEY,
                format!(
                    "certificate {} in {file:?} is not a usable CA certificate: {e}",
                    i + 1
                ),
            );
        }
    }
    certs
}

/// Most idle connections `[server] upstream_max_idle` may keep per upstream origin (each
/// is a file descriptor and a socket on both ends).
const MAX_UPSTREAM_IDLE: u64 = 65_536;

/// `[server] upstream_max_idle` (0 to [`MAX_UPSTREAM_IDLE`]) and `upstream_idle_timeout`.
fn upstream_pool(ck: &mut Checker, raw: &RawServer) -> PoolBudget {
    let default = PoolBudget::default();
    let max_idle = match raw.upstream_max_idle {
        None => default.max_idle,
        Some(n) if n <= MAX_UPSTREAM_IDLE => n as usize,
        Some(n) => {
            ck.problem(
                "[server].upstream_max_idle",
                format!("{n} is more than {MAX_UPSTREAM_IDLE}"),
            );
            default.max_idle
        }
    };
    let idle_timeout = ck.timeout(
        "[server].upstream_idle_timeout",
        raw.upstream_idle_timeout.as_deref(),
        "90s",
    );
    PoolBudget {
        max_idle,
        idle_timeout,
    }
}

/// `[server] trusted_proxies`: every entry an IP or a CIDR.
fn trusted_proxies(ck: &mut Checker, raw: &[String]) -> TrustedProxies {
    let mut networks = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        match crate::client_addr::Cidr::parse(entry) {
            Ok(cidr) => networks.push(cidr),
            Err(why) => ck.problem(format!("[server].trusted_proxies[{i}]"), why),
        }
    }
    TrustedProxies::new(networks)
}

/// `[log]`: `access` is "stdout", "off" or a path (relative to the config's directory).
fn log(ck: &mut Checker, raw: RawLog) -> LogConfig {
    let access = match raw.access.as_deref().unwrap_or("stdout") {
        "stdout" => AccessTarget::Stdout,
        "off" => AccessTarget::Off,
        "" => {
            ck.problem("[log].access", "must be \"stdout\", \"off\" or a file path");
            AccessTarget::Off
        }
        path => AccessTarget::File(ck.path(path)),
    };
    let format = match raw.format.as_deref().unwrap_or("json") {
        "json" => LogFormat::Json,
        "combined" => LogFormat::Combined,
        other => {
            ck.problem(
                "[log].format",
                format!("{other:?} is not \"json\" or \"combined\""),
            );
            LogFormat::Json
        }
    };
    LogConfig { access, format }
}

fn limits(ck: &mut Checker, raw: &RawServer) -> Limits {
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        ck.problem("[server].max_connections", "must be at least 1");
    }
    Limits {
        max_connections: max_connections.max(1),
        request_head_timeout: ck.timeout(
            "[server].request_head_timeout",
            raw.request_head_timeout.as_deref(),
            "30s",
        ),
        keepalive_timeout: ck.timeout(
            "[server].keepalive_timeout",
            raw.keepalive_timeout.as_deref(),
            "60s",
        ),
        max_request_body: ck.size(
            "[server].max_request_body",
            raw.max_request_body.as_deref(),
            DEFAULT_MAX_REQUEST_BODY,
        ),
        request_body_timeout: ck.timeout(
            "[server].request_body_timeout",
            raw.request_body_timeout.as_deref(),
            "30s",
        ),
    }
}

/// `[oauth] store` (with `store_prefix` and `store_password_file` for Redis).
fn store(ck: &mut Checker, raw: &RawOAuth) -> StoreSpec {
    let text = raw.store.as_deref().unwrap_or(DEFAULT_STORE);
    let standalone = text.starts_with("redis://") || text.starts_with("rediss://");
    let topology = match redis_url::parse(text) {
        Some(Ok(topology)) => Some(topology),
        Some(Err(why)) => {
            ck.problem("[oauth].store", why);
            None
        }
        None if standalone => standalone_url(ck, text),
        None => None,
    };
    let redis = standalone
        || text.starts_with(redis_url::SENTINEL_SCHEME)
        || text.starts_with(redis_url::CLUSTER_SCHEME);
    if !redis {
        for (key, set) in [
            ("[oauth].store_prefix", raw.store_prefix.is_some()),
            (
                "[oauth].store_password_file",
                raw.store_password_file.is_some(),
            ),
        ] {
            if set {
                ck.problem(key, "only used with a Redis store");
            }
        }
    }
    if text == "memory" {
        return StoreSpec::Memory;
    }
    if let Some(p) = text.strip_prefix("sqlite:") {
        return StoreSpec::Sqlite(ck.path(p));
    }
    if !redis {
        ck.problem(
            "[oauth].store",
            format!(
                "{:?} is not \"memory\", \"sqlite:PATH\", \"redis://HOST:PORT/DB\", \"rediss://HOST:PORT/DB\", \
                 \"{}HOST:PORT[,HOST:PORT…]/MASTER_NAME/DB\" or \"{}HOST:PORT[,HOST:PORT…]\"",
                entries::redact_userinfo(text),
                redis_url::SENTINEL_SCHEME,
                redis_url::CLUSTER_SCHEME,
            ),
        );
        return StoreSpec::Memory;
    }
    let prefix = raw
        .store_prefix
        .clone()
        .unwrap_or_else(|| DEFAULT_STORE_PREFIX.to_string());
    if prefix.is_empty() {
        ck.problem("[oauth].store_prefix", "must not be empty");
    }
    let url_password = match &topology {
        Some(RedisTopology::Standalone(url)) => {
            redis::IntoConnectionInfo::into_connection_info(url.expose())
                .is_ok_and(|info| info.redis_settings().password().is_some())
        }
        Some(RedisTopology::Sentinel { .. } | RedisTopology::Cluster { .. }) | None => false,
    };
    let password = raw.store_password_file.as_deref().map(|file| {
        if url_password {
            ck.problem(
                "[oauth].store_password_file",
                "set a password in [oauth].store or store_password_file, not both",
            );
        }
        ck.secret(
            ("[oauth].store_password", None),
            ("[oauth].store_password_file", Some(file)),
            "",
        )
    });
    match topology {
        Some(topology) => StoreSpec::Redis(RedisSpec {
            topology,
            prefix,
            password,
        }),
        // Already refused above; the rest of the config is still checked.
        None => StoreSpec::Memory,
    }
}

/// A `redis://` or `rediss://` URL, as the `redis` crate reads it at start-up.
fn standalone_url(ck: &mut Checker, text: &str) -> Option<RedisTopology> {
    match redis::IntoConnectionInfo::into_connection_info(text) {
        Ok(_) => Some(RedisTopology::Standalone(Secret::new(text.to_string()))),
        // The parser's message may quote the URL, and so a password: it is not passed on.
        Err(_) => {
            ck.problem(
                "[oauth].store",
                format!(
                    "{:?} is not a Redis URL like \"redis://HOST:PORT/DB\"",
                    entries::redact_userinfo(text)
                ),
            );
            None
        }
    }
}

fn oauth(ck: &mut Checker, raw: RawOAuth) -> OAuthConfig {
    let store = store(ck, &raw);
    let token_format = token_format(ck, &raw);
    let issuer = raw.issuer.unwrap_or_else(|| DEFAULT_ISSUER.to_string());
    if !is_http_url(&issuer) {
        ck.problem(
            "[oauth].issuer",
            format!("{issuer:?} is not an http(s) URL"),
        );
    }
    let scopes = raw.scopes.unwrap_or_default();
    for name in scopes.keys() {
        if !is_scope_token(name) {
            ck.problem(
                format!("[oauth.scopes].{name:?}"),
                "not a valid scope name (RFC 6749 §3.3)",
            );
        }
    }
    let grant_max_lifetime = ck.duration(
        "[oauth].grant_max_lifetime",
        raw.grant_max_lifetime.as_deref(),
        "90d",
    );
    if grant_max_lifetime < Duration::from_secs(1) {
        ck.problem("[oauth].grant_max_lifetime", "must be at least 1s");
    }
    OAuthConfig {
        issuer: issuer.trim_end_matches('/').to_string(),
        store,
        access_token_ttl: ck.duration(
            "[oauth].access_token_ttl",
            raw.access_token_ttl.as_deref(),
            "1h",
        ),
        refresh_token_ttl: ck.duration(
            "[oauth].refresh_token_ttl",
            raw.refresh_token_ttl.as_deref(),
            "30d",
        ),
        code_ttl: ck.duration("[oauth].code_ttl", raw.code_ttl.as_deref(), "60s"),
        grant_max_lifetime,
        allow_implicit: raw.allow_implicit.unwrap_or(false),
        allow_password_grant: raw.allow_password_grant.unwrap_or(false),
        scopes,
        token_format,
    }
}

/// `[oauth] token_format`, and for `"jwt"` the signing keys, read here so that `check`
/// refuses a missing or unusable key file exactly as `run` would.
fn token_format(ck: &mut Checker, raw: &RawOAuth) -> TokenFormat {
    match raw.token_format.as_deref().unwrap_or("opaque") {
        "opaque" => {
            for (key, set) in [
                ("[oauth].signing_key", raw.signing_key.is_some()),
                (
                    "[oauth].signing_keys_previous",
                    raw.signing_keys_previous.is_some(),
                ),
            ] {
                if set {
                    ck.problem(key, "only used with token_format = \"jwt\"");
                }
            }
            TokenFormat::Opaque
        }
        "jwt" => signing_keys(ck, raw).map_or(TokenFormat::Opaque, |keys| {
            TokenFormat::Jwt(std::sync::Arc::new(keys))
        }),
        other => {
            ck.problem(
                "[oauth].token_format",
                format!("{other:?} is not \"opaque\" or \"jwt\""),
            );
            TokenFormat::Opaque
        }
    }
}

fn signing_keys(ck: &mut Checker, raw: &RawOAuth) -> Option<crate::jwt::SigningKeys> {
    let load = |ck: &mut Checker, key: &str, file: &str| match crate::jwt::SigningKey::load(
        &ck.path(file),
    ) {
        Ok(k) => Some(k),
        Err(e) => {
            ck.problem(key, format!("{file:?}: {}", crate::error::error_chain(&e)));
            None
        }
    };
    let Some(file) = raw.signing_key.as_deref() else {
        ck.problem(
            "[oauth].signing_key",
            "required when token_format = \"jwt\" (make one with `tollgate gen-key`)",
        );
        return None;
    };
    let current = load(ck, "[oauth].signing_key", file);
    let mut previous = Vec::new();
    for file in raw.signing_keys_previous.iter().flatten() {
        if let Some(k) = load(ck, "[oauth].signing_keys_previous", file) {
            previous.push(k.public().clone());
        }
    }
    let current = current?;
    let mut kids = vec![current.kid().to_string()];
    for key in &previous {
        let kid = key.kid.clone().unwrap_or_default();
        if kids.contains(&kid) {
            ck.problem(
                "[oauth].signing_keys_previous",
                format!("the key with kid {kid:?} is listed twice"),
            );
        }
        kids.push(kid);
    }
    Some(crate::jwt::SigningKeys::new(current, previous))
}

fn verify(ck: &mut Checker, raw: RawVerify) -> VerifyConfig {
    let source = match raw.source.as_deref().unwrap_or("local") {
        "local" => VerifySource::Local,
        "remote" => VerifySource::Remote(remote_verify(ck, &raw)),
        "jwks" => VerifySource::Jwks(jwks_verify(ck, &raw)),
        other => {
            ck.problem(
                "[verify].source",
                format!("{other:?} is not \"local\", \"remote\" or \"jwks\""),
            );
            VerifySource::Local
        }
    };
    if raw.issuer.is_some() && matches!(source, VerifySource::Local) {
        // The local verifier's tokens are this server's own: their issuer is [oauth].issuer.
        ck.problem(
            "[verify].issuer",
            "only used with source = \"remote\" or \"jwks\"",
        );
    }
    if raw.jwks_url.is_some() && !matches!(source, VerifySource::Jwks(_)) {
        ck.problem("[verify].jwks_url", "only used with source = \"jwks\"");
    }
    let cache_capacity = raw.cache_capacity.unwrap_or(100_000);
    let max_stale = ck.duration("[verify].max_stale", raw.max_stale.as_deref(), "1s");
    if max_stale.is_zero() {
        ck.problem("[verify].max_stale", "must be longer than zero");
    }
    VerifyConfig {
        source,
        cache_ttl: ck.duration("[verify].cache_ttl", raw.cache_ttl.as_deref(), "30s"),
        negative_cache_ttl: ck.duration(
            "[verify].negative_cache_ttl",
            raw.negative_cache_ttl.as_deref(),
            "5s",
        ),
        cache_capacity,
        max_stale,
        stale_grace: ck.duration("[verify].stale_grace", raw.stale_grace.as_deref(), "5m"),
    }
}

fn remote_verify(ck: &mut Checker, raw: &RawVerify) -> RemoteVerifyConfig {
    let url = raw.url.clone().unwrap_or_default();
    if !is_http_url(&url) {
        ck.problem(
            "[verify].url",
            "an http(s) URL is required when source = \"remote\"",
        );
    }
    let client_id = raw.client_id.clone().unwrap_or_default();
    if client_id.is_empty() {
        ck.problem("[verify].client_id", "required when source = \"remote\"");
    }
    let secret = ck.secret(
        ("[verify].client_secret", raw.client_secret.as_deref()),
        (
            "[verify].client_secret_file",
            raw.client_secret_file.as_deref(),
        ),
        "required when source = \"remote\"",
    );
    if let Some(issuer) = raw.issuer.as_deref().filter(|i| !is_identifier(i)) {
        ck.problem(
            "[verify].issuer",
            format!("{issuer:?} is not an issuer identifier (non-empty, no spaces or control characters)"),
        );
    }
    RemoteVerifyConfig {
        url,
        client_id,
        client_secret: secret,
        timeout: ck.duration("[verify].timeout", raw.timeout.as_deref(), "5s"),
        issuer: raw.issuer.clone(),
    }
}

fn jwks_verify(ck: &mut Checker, raw: &RawVerify) -> JwksVerifyConfig {
    let jwks_url = raw.jwks_url.clone().unwrap_or_default();
    if !is_http_url(&jwks_url) {
        ck.problem(
            "[verify].jwks_url",
            "an http(s) URL is required when source = \"jwks\"",
        );
    }
    let issuer = raw.issuer.clone().unwrap_or_default();
    if !is_identifier(&issuer) {
        ck.problem(
            "[verify].issuer",
            "the issuer's identifier (the `iss` of its tokens) is required when source = \"jwks\"",
        );
    }
    for (key, set) in [
        ("[verify].url", raw.url.is_some()),
        ("[verify].client_id", raw.client_id.is_some()),
        ("[verify].client_secret", raw.client_secret.is_some()),
        (
            "[verify].client_secret_file",
            raw.client_secret_file.is_some(),
        ),
    ] {
        if set {
            ck.problem(key, "only used with source = \"remote\"");
        }
    }
    JwksVerifyConfig {
        jwks_url,
        issuer,
        timeout: ck.timeout("[verify].timeout", raw.timeout.as_deref(), "5s"),
    }
}

#[cfg(test)]
mod tests;
