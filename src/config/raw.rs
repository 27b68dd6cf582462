//! The serde mirror of `gateway.toml`, exactly as the contract spells it.
//!
//! No logic lives here: every value stays as written (durations and URLs are strings).
//! `config.rs` turns this into typed config and collects every problem it finds, naming
//! the key path. Unknown keys are errors, but not serde's: `config/checker.rs` reads each
//! table through `serde_ignored` and reports every key these structs do not name as a
//! problem of its own, so a typo does not throw the rest of its table away (which would
//! bring follow-on problems from defaults the user never meant).

use serde::Deserialize;
use std::collections::BTreeMap;

/// `[server]`: the listeners and the limits they apply.
#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    /// Public plain-HTTP listener; default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Internal listener for `/verify`, `/metrics`, `/healthz`, `/readyz`; default `127.0.0.1:9090`.
    pub internal_listen: Option<String>,
    /// Connections served at once, per listener; default 10000.
    pub max_connections: Option<u32>,
    /// A duration; default `"30s"`.
    pub request_head_timeout: Option<String>,
    /// A duration; default `"60s"`.
    pub keepalive_timeout: Option<String>,
    /// A size; default `"10MiB"`.
    pub max_request_body: Option<String>,
    /// A duration; default `"30s"`.
    pub request_body_timeout: Option<String>,
    /// Idle keep-alive connections kept per upstream origin; default 1024.
    pub upstream_max_idle: Option<u64>,
    /// A duration; default `"90s"`.
    pub upstream_idle_timeout: Option<String>,
    /// A PEM file of CA certificates trusted for `https://` upstreams besides the webpki
    /// roots; default none.
    pub upstream_ca: Option<String>,
    /// IPs or CIDRs whose `X-Forwarded-For` is believed for the client address; default none.
    pub trusted_proxies: Option<Vec<String>>,
    /// Optional HTTPS listener.
    pub tls: Option<RawTls>,
}

/// `[log]`: the access log.
#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    /// `"stdout"` (default), `"off"` or a file path.
    pub access: Option<String>,
    /// `"json"` (default) or `"combined"`.
    pub format: Option<String>,
}

/// `[server.tls]`: HTTPS listener with a PEM chain and key.
#[derive(Debug, Deserialize)]
pub struct RawTls {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

/// `[oauth]`: the authorization server.
#[derive(Debug, Default, Deserialize)]
pub struct RawOAuth {
    pub issuer: Option<String>,
    pub store: Option<String>,
    pub store_prefix: Option<String>,
    pub store_password_file: Option<String>,
    pub access_token_ttl: Option<String>,
    pub refresh_token_ttl: Option<String>,
    pub code_ttl: Option<String>,
    pub grant_max_lifetime: Option<String>,
    pub allow_implicit: Option<bool>,
    pub allow_password_grant: Option<bool>,
    /// `"opaque"` (default) or `"jwt"`.
    pub token_format: Option<String>,
    /// jwt: path of the PKCS#8 PEM private key access tokens are signed with.
    pub signing_key: Option<String>,
    /// jwt: paths of earlier signing keys, still accepted and published in the JWKS.
    pub signing_keys_previous: Option<Vec<String>>,
    /// Scope name → consent text.
    pub scopes: Option<BTreeMap<String, String>>,
}

/// `[users]`: where resource owners' passwords are checked.
#[derive(Debug, Default, Deserialize)]
pub struct RawUsers {
    pub source: Option<String>,
    pub file: Option<String>,
    pub ldap: Option<RawLdap>,
    pub throttle: Option<RawThrottle>,
}

/// `[users.ldap]`: bind against a directory, by DN template or search-then-bind.
#[derive(Debug, Deserialize)]
pub struct RawLdap {
    pub url: String,
    pub user_dn: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    pub bind_password_file: Option<String>,
    pub base_dn: Option<String>,
    pub filter: Option<String>,
    pub starttls: Option<bool>,
    pub ca_file: Option<String>,
    pub username_attribute: Option<String>,
    pub name_attribute: Option<String>,
    pub email_attribute: Option<String>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
    pub pool_size: Option<usize>,
}

/// `[users.throttle]`: brute-force protection for password checks.
#[derive(Debug, Default, Deserialize)]
pub struct RawThrottle {
    pub max_failures_per_user: Option<u32>,
    pub max_failures_per_ip: Option<u32>,
    pub window: Option<String>,
    pub ban: Option<String>,
}

/// One `[[clients]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawClient {
    pub id: String,
    pub name: Option<String>,
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub introspect: bool,
    pub dpop: Option<String>,
}

/// `[verify]`: how the guard checks bearer tokens.
#[derive(Debug, Default, Deserialize)]
pub struct RawVerify {
    pub source: Option<String>,
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Read the remote client secret from this file instead (trailing newline dropped).
    pub client_secret_file: Option<String>,
    pub cache_ttl: Option<String>,
    pub negative_cache_ttl: Option<String>,
    pub cache_capacity: Option<u64>,
    /// How long a remote introspection call may take before the guard answers 503.
    pub timeout: Option<String>,
    /// Remote: the `iss` an introspection answer must carry, when set; jwks: the `iss` every
    /// token must carry (required).
    pub issuer: Option<String>,
    /// jwks: where the third-party issuer publishes its RFC 7517 key set.
    pub jwks_url: Option<String>,
    pub max_stale: Option<String>,
    pub stale_grace: Option<String>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
pub struct RawRoute {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub strip_prefix: bool,
    pub timeout: Option<String>,
    pub auth: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 8707 resource identifier the token's `aud` must contain.
    pub audience: Option<String>,
    /// A size; default `[server].max_request_body`.
    pub max_request_body: Option<String>,
    /// `"serve_cached"` (default) or `"deny"`.
    pub when_store_down: Option<String>,
}

/// `upstream = "http://…"` or `upstream = ["http://a", "http://b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawUpstream {
    One(String),
    Many(Vec<String>),
}

impl RawUpstream {
    pub fn urls(&self) -> Vec<&str> {
        match self {
            RawUpstream::One(u) => vec![u.as_str()],
            RawUpstream::Many(us) => us.iter().map(String::as_str).collect(),
        }
    }
}
