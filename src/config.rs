//! Typed configuration, parsed once at start-up from `gateway.toml`.
//!
//! `load(path)` reads the file; `from_str` holds the logic. Each section (and each
//! `[[routes]]` / `[[clients]]` entry) is deserialized on its own so that one mistake does
//! not hide the next: every problem is collected and reported with the file name and the
//! key path and, where the key is written in the file, its line and column, e.g.
//! ``gateway.toml:12:1: [[routes]] "mail".upstream: not an http(s) URL``.
//!
//! `validate` reads the whole file and the top-level sections, `entries` the
//! `[[clients]]` and `[[routes]]`, `users` the `[users]` tables; each writes its problems
//! into the `checker::Checker`, which knows none of them (the dependency runs one way).
//! `redis_url` parses the Redis store URLs, `locate` finds each key path's line and
//! column, and [`raw`] is the serde mirror of the file.

mod checker;
mod entries;
mod locate;
pub mod raw;
mod redis_url;
mod users;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::client_addr::TrustedProxies;
pub use checker::{is_scope_token, parse_duration, parse_size};
pub use entries::redact_userinfo;

/// The whole gateway configuration, validated.
pub struct Config {
    /// The file this came from (for messages) and the directory relative paths resolve against.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub oauth: OAuthConfig,
    pub users: UsersConfig,
    pub clients: Vec<ClientConfig>,
    pub verify: VerifyConfig,
    pub routes: Vec<RouteConfig>,
    pub log: LogConfig,
    /// Where each key is written in the file, for problems found after parsing.
    locations: locate::Locations,
}

/// `[server]`.
pub struct ServerConfig {
    /// Public plain-HTTP listener (HTTP/1.1 and HTTP/2 prior knowledge).
    pub listen: SocketAddr,
    /// Internal listener: `/verify`, `/metrics`, `/healthz`, `/readyz`.
    pub internal_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` names the client (logs, login throttling).
    pub trusted_proxies: TrustedProxies,
    /// `[server] upstream_max_idle` and `upstream_idle_timeout`.
    pub upstream_pool: PoolBudget,
    /// `[server] upstream_ca`: the CA certificates (read from the PEM file when the config
    /// is loaded, each checked to be a usable trust anchor) that `https://` upstreams'
    /// certificates may chain to besides the webpki roots. Empty when not set.
    pub upstream_ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// The budget of each upstream origin's pool of idle keep-alive connections
/// (`gateway::upstream::idle`), shared by every route and both engines; a reload applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolBudget {
    /// `[server] upstream_max_idle`: idle connections kept per upstream origin; 0 keeps none
    /// (every request connects afresh). Default 1024.
    pub max_idle: usize,
    /// `[server] upstream_idle_timeout`: an idle connection older than this is closed, not
    /// reused (the upstream has most likely closed it already). Default 90 s.
    pub idle_timeout: Duration,
}

impl Default for PoolBudget {
    fn default() -> Self {
        PoolBudget {
            max_idle: 1024,
            idle_timeout: Duration::from_secs(90),
        }
    }
}

/// `[log]`: where the access log goes and how its lines look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub access: AccessTarget,
    pub format: LogFormat,
}

/// `[log] access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    Stdout,
    Off,
    /// Appended to; reopened on SIGHUP (after a log rotation renamed it).
    File(PathBuf),
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Apache/nginx "combined".
    Combined,
}

/// The `[server]` limits every listener applies to its connections and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once per listener; more wait in the listen backlog (they are
    /// not accepted). Default 10000.
    pub max_connections: u32,
    /// A request head must arrive in full within this: counted from the connection's start
    /// for its first request, from the head's first byte for later ones. Default 30 s.
    pub request_head_timeout: Duration,
    /// A connection with no request in flight is closed after this. Default 60 s.
    pub keepalive_timeout: Duration,
    /// Largest request body in bytes, for routes that set no `max_request_body` of their
    /// own and for the authorization server (which also keeps its own 64 KiB cap).
    /// Default 10 MiB.
    pub max_request_body: u64,
    /// A body the gateway reads itself (`/oauth/*` forms, `/verify`) must arrive in full
    /// within this; a proxied body may not pause longer than this. Default 30 s.
    pub request_body_timeout: Duration,
}

/// `[server.tls]`: an HTTPS listener terminating TLS with rustls.
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// HTTP/1.1 connections start on the fast lane, as on the plain listener. Not a config
    /// key (always true from a file): tests turn it off to reach hyper's HTTP/1.1 engine
    /// over TLS.
    #[doc(hidden)]
    pub http1_fast_lane: bool,
}

/// `[oauth]`: the authorization server's settings.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Public base URL without a trailing slash.
    pub issuer: String,
    pub store: StoreSpec,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub code_ttl: Duration,
    /// A grant (everything one authorization issued) ends this long after the user
    /// authorized, however often its refresh token rotates; default 90 days.
    pub grant_max_lifetime: Duration,
    pub allow_implicit: bool,
    pub allow_password_grant: bool,
    /// Every scope the server can grant, with its consent text.
    pub scopes: BTreeMap<String, String>,
    /// What access tokens look like: random strings, or RFC 9068 JWTs.
    pub token_format: TokenFormat,
}

/// `[oauth] token_format`.
#[derive(Debug, Clone)]
pub enum TokenFormat {
    /// Random 256-bit strings, looked up by hash.
    Opaque,
    /// RFC 9068 JWTs signed with `signing_key`; the previous keys are still accepted and
    /// published. Refresh tokens stay opaque.
    Jwt(std::sync::Arc<crate::jwt::SigningKeys>),
}

/// Two token formats are the same when they are both opaque, or both JWTs with the same
/// public keys in the same order (a key's public half identifies it: its `kid` is the
/// thumbprint of it).
impl PartialEq for TokenFormat {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Opaque, Self::Opaque) => true,
            (Self::Jwt(a), Self::Jwt(b)) => a.public == b.public,
            _ => false,
        }
    }
}

impl TokenFormat {
    /// The signing keys, when access tokens are JWTs.
    pub fn keys(&self) -> Option<&std::sync::Arc<crate::jwt::SigningKeys>> {
        match self {
            TokenFormat::Opaque => None,
            TokenFormat::Jwt(keys) => Some(keys),
        }
    }
}

/// Where tokens, codes and grants are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Sqlite(PathBuf),
    Redis(RedisSpec),
}

/// A Redis store: where Redis is, the key prefix and the password.
#[derive(Clone)]
pub struct RedisSpec {
    pub topology: RedisTopology,
    /// `[oauth] store_prefix`: put before every key, so deployments can share one Redis.
    /// Default `"tollgate:"`.
    pub prefix: String,
    /// `[oauth] store_password_file`: the password of the Redis servers that hold the data
    /// (and of the sentinels, when they ask for one), instead of one in a `redis://` URL.
    pub password: Option<Secret>,
}

/// How the Redis servers are arranged: the three forms of `[oauth] store`.
#[derive(Clone)]
pub enum RedisTopology {
    /// `redis://[:PASSWORD@]HOST:PORT/DB` or `rediss://…` (TLS), as configured (it may hold
    /// a password: shown only through [`RedisSpec::redacted`]).
    Standalone(Secret),
    /// `redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME/DB`: the sentinels name the
    /// current master of `master`; database `db` on it.
    Sentinel {
        sentinels: Vec<RedisNode>,
        master: String,
        db: i64,
    },
    /// `redis+cluster://HOST:PORT[,HOST:PORT…]`: some nodes of the Cluster; the rest are
    /// found from them.
    Cluster { nodes: Vec<RedisNode> },
}

/// One `HOST:PORT` of a Sentinel or Cluster URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisNode {
    /// A name or an IP address (an IPv6 one without its brackets).
    pub host: String,
    pub port: u16,
}

// === impl RedisSpec ===

impl RedisSpec {
    /// The store as configured, with any user and password replaced by `***`, for logs and
    /// error messages.
    pub fn redacted(&self) -> String {
        match &self.topology {
            RedisTopology::Standalone(url) => entries::redact_userinfo(url.expose()).into_owned(),
            RedisTopology::Sentinel {
                sentinels,
                master,
                db,
            } => format!("redis+sentinel://{}/{master}/{db}", node_list(sentinels)),
            RedisTopology::Cluster { nodes } => format!("redis+cluster://{}", node_list(nodes)),
        }
    }
}

impl fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSpec")
            .field("topology", &self.redacted())
            .field("prefix", &self.prefix)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Compared to tell whether a reload changed the store (which needs a restart).
impl PartialEq for RedisSpec {
    fn eq(&self, other: &Self) -> bool {
        self.topology == other.topology
            && self.prefix == other.prefix
            && self.password.as_ref().map(Secret::expose)
                == other.password.as_ref().map(Secret::expose)
    }
}

impl Eq for RedisSpec {}

// === impl RedisTopology ===

impl PartialEq for RedisTopology {
    fn eq(&self, other: &Self) -> bool {
        use RedisTopology::{Cluster, Sentinel, Standalone};
        match (self, other) {
            (Standalone(a), Standalone(b)) => a.expose() == b.expose(),
            (
                Sentinel {
                    sentinels,
                    master,
                    db,
                },
                Sentinel {
                    sentinels: s,
                    master: m,
                    db: d,
                },
            ) => sentinels == s && master == m && db == d,
            (Cluster { nodes }, Cluster { nodes: n }) => nodes == n,
            (Standalone(_) | Sentinel { .. } | Cluster { .. }, _) => false,
        }
    }
}

impl Eq for RedisTopology {}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Standalone(url) => f
                .debug_tuple("Standalone")
                .field(&entries::redact_userinfo(url.expose()))
                .finish(),
            RedisTopology::Sentinel {
                sentinels,
                master,
                db,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("master", master)
                .field("db", db)
                .finish(),
            RedisTopology::Cluster { nodes } => {
                f.debug_struct("Cluster").field("nodes", nodes).finish()
            }
        }
    }
}

// === impl RedisNode ===

impl fmt::Display for RedisNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn node_list(nodes: &[RedisNode]) -> String {
    let shown: Vec<String> = nodes.iter().map(RedisNode::to_string).collect();
    shown.join(",")
}

/// `[users]`: where passwords are checked, and how guessing is slowed down.
pub struct UsersConfig {
    pub source: UserSource,
    pub throttle: ThrottleConfig,
}

/// `[users.throttle]`: failures are counted per username and per client IP in a sliding
/// window; past the limit, attempts are refused for `ban`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures_per_user: u32,
    pub max_failures_per_ip: u32,
    pub window: Duration,
    pub ban: Duration,
}

/// How `[users.ldap]` finds the user's DN.
#[derive(Clone)]
pub enum LdapBind {
    /// Bind directly as `user_dn` with `{username}` filled in (RFC 4514-escaped).
    Template { user_dn: String },
    /// Bind as a service account, search `base_dn` with `filter` (`{username}` RFC
    /// 4515-escaped), then bind as the one entry found.
    Search {
        bind_dn: String,
        bind_password: Secret,
        base_dn: String,
        filter: String,
    },
}

/// `[users.ldap]`.
#[derive(Clone)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub bind: LdapBind,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM CA certificates to trust for `ldaps://`/StartTLS (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Attribute holding the canonical login name (becomes `sub`); default `uid`.
    pub username_attribute: String,
    /// Attributes for the consent page and `/verify`; defaults `cn` and `mail`.
    pub name_attribute: String,
    pub email_attribute: String,
    pub connect_timeout: Duration,
    /// Longest time one LDAP operation may take.
    pub timeout: Duration,
    /// Idle service-account connections kept open.
    pub pool_size: usize,
}

/// Where resource owners' passwords are checked.
pub enum UserSource {
    /// A TOML file of `[[users]]` with argon2id hashes. `required` is false only when the
    /// config has no `[users]` section at all (then a missing file means "no users").
    File { path: PathBuf, required: bool },
    /// An LDAP directory.
    Ldap(Box<LdapConfig>),
}

/// One registered OAuth client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: String,
    /// Shown on the consent page; the id when absent.
    pub name: String,
    /// `None` for a public client (PKCE required).
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub introspect: bool,
    /// `dpop`: whether its tokens must be DPoP-bound (RFC 9449).
    pub dpop: DpopMode,
}

/// `[[clients]] dpop`: a token request with a valid `DPoP` proof always gets a bound token;
/// `Required` refuses requests without one, so the client never holds an unbound token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopMode {
    #[default]
    Optional,
    Required,
}

/// The grants a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    Password,
    Implicit,
}

impl GrantType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "authorization_code" => Self::AuthorizationCode,
            "refresh_token" => Self::RefreshToken,
            "client_credentials" => Self::ClientCredentials,
            "password" => Self::Password,
            "implicit" => Self::Implicit,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::Password => "password",
            Self::Implicit => "implicit",
        }
    }
}

/// `[verify]`: how the guard checks bearer tokens. Compared on reload: a change builds a
/// new verifier and an empty cache.
#[derive(Clone, PartialEq)]
pub struct VerifyConfig {
    pub source: VerifySource,
    /// Longest time an active result is reused; never past the token's own `exp`.
    pub cache_ttl: Duration,
    /// How long an inactive result is reused.
    pub negative_cache_ttl: Duration,
    /// Most cached results kept.
    pub cache_capacity: u64,
    /// When the store's revocation feed has a shared channel (Redis, a shared SQLite file)
    /// and it has been silent this long, cached answers are re-checked at the store before
    /// use.
    pub max_stale: Duration,
    /// Local verifier, store unreachable: routes with `when_store_down = "serve_cached"`
    /// keep using answers verified at the store at most this long ago.
    pub stale_grace: Duration,
}

/// Which verifier the guard uses.
#[derive(Clone, PartialEq)]
pub enum VerifySource {
    /// This process's own token store, no network hop.
    Local,
    /// An RFC 7662 introspection endpoint.
    Remote(RemoteVerifyConfig),
    /// RFC 9068 JWTs of a third-party issuer, checked with the keys it publishes.
    Jwks(JwksVerifyConfig),
}

/// `[verify] source = "jwks"`: a third-party issuer's JWT access tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct JwksVerifyConfig {
    /// The issuer's RFC 7517 JWK Set (http or https).
    pub jwks_url: String,
    /// The `iss` every token must carry, compared exactly.
    pub issuer: String,
    /// Longest wait for the key set before the guard answers 503 (`[verify] timeout`).
    pub timeout: Duration,
}

/// Where and as whom to call a remote RFC 7662 endpoint.
#[derive(Clone, PartialEq)]
pub struct RemoteVerifyConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Longest wait for one introspection answer before the guard answers 503.
    pub timeout: Duration,
    /// When set, an answer whose `iss` is absent or differs (compared exactly) is inactive.
    pub issuer: Option<String>,
}

/// A secret string. It has no `Debug` or `Display` so it cannot end up in a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// For telling whether a reloaded config changed a setting; never for checking a secret a
/// client presented (that is `secrets::verify_secret`, in constant time).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name; the `route` label in metrics.
    pub name: String,
    /// Matched on whole path segments.
    pub path_prefix: String,
    /// Lower-case host name without port; `None` matches any host.
    pub host: Option<String>,
    /// One or more upstream base URLs (round-robin).
    pub upstreams: Vec<http::Uri>,
    pub strip_prefix: bool,
    /// No response headers within this time → 504.
    pub timeout: Duration,
    pub auth: AuthMode,
    /// All are required of the token.
    pub scopes: Vec<String>,
    /// When set, the token's `aud` must contain it (RFC 8707); `None` accepts any audience.
    pub audience: Option<String>,
    /// Largest request body in bytes: the route's own `max_request_body`, else the
    /// `[server]` one.
    pub max_request_body: u64,
    /// What the guard does with a cached answer it cannot re-check at the store.
    pub when_store_down: WhenStoreDown,
}

/// A route's `when_store_down`: what a cached answer is worth while the token store cannot
/// be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStoreDown {
    /// Keep using answers verified at most `[verify] stale_grace` ago (availability first).
    ServeCached,
    /// Answer 503 once an answer would need a re-check (revocation first).
    Deny,
}

/// Whether a route needs a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Bearer,
    None,
}

/// Why the configuration could not be used. Every problem names the file and key path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", at_position(.file, *.at))]
    Syntax {
        file: String,
        /// Line and column of the mistake, when the parser knows them.
        at: Option<(usize, usize)>,
        message: String,
    },
    #[error("{}", render_problems(.file, .problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path as a user would look for it, e.g. `[[routes]] "mail".upstream`.
    pub key: String,
    pub why: String,
    /// Line and column of the key in the file, when it is written there.
    pub at: Option<(usize, usize)>,
}

impl Problem {
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            why: why.into(),
            at: None,
        }
    }
}

/// `gateway.toml:12:1` (or just `gateway.toml`), the way compilers point at a place.
fn at_position(file: &str, at: Option<(usize, usize)>) -> String {
    match at {
        Some((line, column)) => format!("{file}:{line}:{column}"),
        None => file.to_string(),
    }
}

fn render_problems(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}: {}", at_position(file, p.at), p.key, p.why))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// How many distinct problems this error reports.
    pub fn problem_count(&self) -> usize {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => 1,
            ConfigError::Invalid { problems, .. } => problems.len(),
        }
    }
}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Self::from_str(&text, path)
    }

    /// Parses `text` as if it were the file at `path` (which names messages and anchors
    /// relative paths).
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, path)
    }

    /// The directory that relative paths in this config are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.source.parent().unwrap_or_else(|| Path::new("."))
    }

    pub fn client(&self, id: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// Problems found after parsing (files the config names, see `preflight`), as one error
    /// that points at the keys in this config's file.
    pub fn refuse(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.display().to_string(),
            problems: self.locations.locate(problems),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => f.write_str("memory"),
            StoreSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreSpec::Redis(redis) => f.write_str(&redis.redacted()),
        }
    }
}
